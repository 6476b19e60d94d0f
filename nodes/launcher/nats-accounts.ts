/**
 * Per-role NATS credentials: one nkey pair per Vigil user (protocol/permissions.ts), the seeds in
 * `<outDir>/<user>.nk` (mode 0600), and `<outDir>/accounts.conf`, a nats-server configuration
 * fragment with the accounts, the public keys and each user's permissions. The fragment holds no
 * secret and no path, so deployments can `include` it from anywhere beside it.
 */
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { createUser, fromSeed } from '@nats-io/nkeys';
import {
  NatsAccount,
  vigilUsers,
  type NatsAccount as NatsAccountName,
  type Role,
  type SubjectRules,
  type UserPermissions,
  type VigilUser,
} from '../../protocol/index.js';
import { ConfigError, makeNamedDirectory, readNkeySeed } from '../common/index.js';

/** Name of the configuration fragment in the output directory. */
export const ACCOUNTS_FILE = 'accounts.conf';

/** Options of {@link generateNatsCredentials}. */
export interface NatsCredentialsOptions {
  /** Where seeds and `accounts.conf` go; created (mode 0700) if missing. */
  outDir: string;
  /** Regions to serve: one actor-host user each; gateways and services may use all of them. */
  regions: readonly string[];
  /** Edge sites: one edge-gateway user each, and the leaf user its link into the hub presents. */
  edgeSites?: readonly string[];
}

/** One user's credentials. */
export interface NatsUserCredential {
  user: string;
  role: Role;
  region?: string;
  account: NatsAccountName;
  /** The seed file (secret, mode 0600). */
  seedFile: string;
  /** The public nkey (`U...`) the server knows the user by. */
  publicKey: string;
  inboxPrefix: string;
}

/** What {@link generateNatsCredentials} wrote. */
export interface NatsCredentials {
  readonly outDir: string;
  /** Path of `accounts.conf`. */
  readonly accountsFile: string;
  readonly users: readonly NatsUserCredential[];
  /** Seeds that were created by this call (the rest were kept). */
  readonly created: readonly string[];
  /**
   * The environment a node needs to connect as `user` (`NATS_NKEY`, `NATS_INBOX_PREFIX`).
   * @throws ConfigError when there is no such user.
   */
  natsEnvFor(user: string): Record<string, string>;
  /** @throws ConfigError when there is no such user. */
  user(user: string): NatsUserCredential;
}

/**
 * Creates the seeds that are missing, keeps the others, and (re)writes `accounts.conf` for every
 * user of `regions`. Idempotent: running it again with a new region adds that region's user.
 * @throws ConfigError when an existing seed file is not a valid user seed (it is never replaced).
 */
export function generateNatsCredentials(options: NatsCredentialsOptions): NatsCredentials {
  if (options.regions.length === 0) throw new ConfigError('at least one region is needed');
  const outDir = resolve(options.outDir);
  makeNamedDirectory('the credentials directory', outDir, 0o700);
  const users = vigilUsers(options.regions, options.edgeSites);
  const created: string[] = [];
  const credentials = users.map((user): NatsUserCredential => {
    const seedFile = join(outDir, `${user.name}.nk`);
    let seed: Uint8Array;
    try {
      // `wx`: an existing seed is never overwritten, even by a concurrent run.
      const pair = createUser();
      writeFileSync(seedFile, `${new TextDecoder().decode(pair.getSeed())}\n`, {
        mode: 0o600,
        flag: 'wx',
      });
      created.push(user.name);
      seed = pair.getSeed();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      try {
        seed = readNkeySeed(seedFile, 'seed');
      } catch (readErr) {
        throw new ConfigError(
          `${seedFile} is not a valid user nkey seed: fix it, or remove it to generate a new ` +
            `key for ${user.name} (nodes holding the old one are then refused)`,
          { cause: readErr },
        );
      }
      // A copied-in seed may have lost its mode; it is a secret either way.
      chmodSync(seedFile, 0o600);
    }
    return {
      user: user.name,
      role: user.role,
      ...(user.region === undefined ? {} : { region: user.region }),
      account: user.account,
      seedFile,
      publicKey: fromSeed(seed).getPublicKey(),
      inboxPrefix: user.inboxPrefix,
    };
  });
  const accountsFile = join(outDir, ACCOUNTS_FILE);
  writeFileSync(accountsFile, renderAccounts(users, credentials), { mode: 0o644 });

  const find = (name: string): NatsUserCredential => {
    const found = credentials.find((c) => c.user === name);
    if (!found) {
      throw new ConfigError(
        `no NATS user '${name}' in ${outDir}; users are ${credentials.map((c) => c.user).join(', ')}`,
      );
    }
    return found;
  };
  return {
    outDir,
    accountsFile,
    users: credentials,
    created,
    user: find,
    natsEnvFor(name) {
      const c = find(name);
      return { NATS_NKEY: c.seedFile, NATS_INBOX_PREFIX: c.inboxPrefix };
    },
  };
}

/**
 * The `include` line for a nats-server configuration in `configDir` (nats-server resolves
 * includes relative to the including file, so the path is relative).
 */
export function accountsIncludeLine(credentials: NatsCredentials, configDir: string): string {
  return `include ${JSON.stringify(relative(resolve(configDir), credentials.accountsFile))}`;
}

/** The text of `accounts.conf`, for `NatsServerOptions.extraConfig`. */
export function accountsConfig(credentials: NatsCredentials): string {
  return readFileSync(credentials.accountsFile, 'utf8');
}

const q = (s: string): string => JSON.stringify(s);

/** One subject per line: reviewers read these lists, and diffs stay small. */
function renderList(name: string, subjects: readonly string[]): string[] {
  return [`${name}: [`, ...subjects.map((s) => `  ${q(s)}`), ']'];
}

function renderRules(direction: string, rules: SubjectRules): string[] {
  const lines = renderList('allow', rules.allow);
  if (rules.deny?.length) lines.push(...renderList('deny', rules.deny));
  return [`${direction}: {`, ...lines.map((l) => `  ${l}`), '}'];
}

function renderPermissions(p: UserPermissions): string[] {
  return [
    'permissions: {',
    ...renderRules('publish', p.publish).map((l) => `  ${l}`),
    ...renderRules('subscribe', p.subscribe).map((l) => `  ${l}`),
    ...(p.allowResponses ? ['  allow_responses: true'] : []),
    '}',
  ];
}

function renderAccounts(users: VigilUser[], credentials: NatsUserCredential[]): string {
  const indent = (n: number, lines: string[]) => lines.map((l) => `${' '.repeat(n)}${l}`);
  const account = (name: string, extra: string[]): string[] => {
    const members = users.flatMap((user, i) =>
      user.account === name
        ? [
            `# ${user.name}`,
            '{',
            ...indent(2, [
              `nkey: ${q(credentials[i]!.publicKey)}`,
              `allowed_connection_types: [${user.connectionTypes.map(q).join(', ')}]`,
              ...renderPermissions(user.permissions),
            ]),
            '}',
          ]
        : [],
    );
    return [`${name} {`, ...indent(2, [...extra, 'users: [', ...indent(2, members), ']']), '}'];
  };
  return [
    '# Vigil NATS accounts and per-role users, written by `vigil creds generate`',
    '# (nodes/launcher/nats-accounts.ts) from protocol/permissions.ts. Public keys only; the',
    '# seeds are the *.nk files beside this one. Regenerate rather than edit.',
    'accounts {',
    ...indent(2, account(NatsAccount.App, ['jetstream: enabled'])),
    ...indent(2, account(NatsAccount.System, [])),
    '}',
    `system_account: ${NatsAccount.System}`,
    '',
  ].join('\n');
}
