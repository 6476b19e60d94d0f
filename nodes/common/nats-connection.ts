/**
 * How every Vigil process connects to NATS: reconnect forever (an edge outlives broker restarts),
 * and no async stack traces on the hot path (measured: capturing one per request and publish cost
 * a third of the gateway's throughput). Credentials are per role: an nkey seed and the role's own
 * inbox prefix (see protocol/permissions.ts); user/password and token still work.
 */
import { readFileSync } from 'node:fs';
import { fromSeed } from '@nats-io/nkeys';
import {
  connect,
  nkeyAuthenticator,
  type ConnectionOptions,
  type NatsConnection,
  type TlsOptions,
} from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { z } from 'zod';
import {
  ConfigError,
  file,
  list,
  parseSettings,
  settingsGroup,
  text,
  type Env,
  type GroupValues,
} from './env.js';

/** TLS to the NATS server: PEM file paths. */
export interface NatsTlsOptions {
  /** CA that signed the server's certificate (else the system's trust store). */
  caFile?: string;
  /** Client certificate, for servers that verify clients; needs `keyFile`. */
  certFile?: string;
  keyFile?: string;
}

/** Where and as whom to connect. */
export interface NatsConnectOptions {
  /** Comma-separated server URLs. */
  servers: string;
  /** Connection name, shown in nats-server monitoring. */
  name: string;
  user?: string;
  pass?: string;
  token?: string;
  /** The user's nkey seed (`SU...`), read from `NATS_NKEY`'s file by {@link readNkeySeed}. */
  nkeySeed?: Uint8Array;
  /** Prefix of this connection's reply inboxes; a per-role user may subscribe only to its own. */
  inboxPrefix?: string;
  tls?: NatsTlsOptions;
}

/**
 * The authentication, inbox and TLS part of nats.js connection options, for every way Vigil
 * connects (long-running nodes here, the CLI's one-shot connection).
 */
export function natsAuthOptions(options: NatsConnectOptions): Partial<ConnectionOptions> {
  const out: Partial<ConnectionOptions> = {};
  if (options.user !== undefined) {
    out.user = options.user;
    out.pass = options.pass ?? '';
  }
  if (options.token !== undefined) out.token = options.token;
  if (options.nkeySeed !== undefined) out.authenticator = nkeyAuthenticator(options.nkeySeed);
  if (options.inboxPrefix !== undefined) out.inboxPrefix = options.inboxPrefix;
  if (options.tls !== undefined) {
    const tls: TlsOptions = {};
    if (options.tls.caFile !== undefined) tls.caFile = options.tls.caFile;
    if (options.tls.certFile !== undefined) tls.certFile = options.tls.certFile;
    if (options.tls.keyFile !== undefined) tls.keyFile = options.tls.keyFile;
    out.tls = tls;
  }
  return out;
}

/** Connects with Vigil's connection policy and logs status changes. */
/**
 * Keep-alive on every node's NATS connection: a PING after this long without one, ms, and the
 * connection counts as dead (and reconnects) after {@link NATS_MAX_PINGS_OUT} unanswered. The
 * client's default (2 minutes, 2 pings) would leave a node on a half-open link for 6 minutes;
 * every 20 s also keeps middleboxes' idle timers from closing a quiet link. The server side
 * pings its clients as often (`nodes/launcher/nats-server-process.ts`) and has TCP keep-alive on
 * every accepted socket (Go's default, 15 s).
 */
export const NATS_PING_INTERVAL_MS = 20_000;
/** Unanswered PINGs after which a NATS connection is dropped and dialled again. */
export const NATS_MAX_PINGS_OUT = 3;

export async function connectNats(
  options: NatsConnectOptions,
  logger: Logger,
): Promise<NatsConnection> {
  const nc = await connect({
    servers: options.servers.split(',').map((s) => s.trim()),
    name: options.name,
    ...natsAuthOptions(options),
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    pingInterval: NATS_PING_INTERVAL_MS,
    maxPingOut: NATS_MAX_PINGS_OUT,
    waitOnFirstConnect: true,
    noAsyncTraces: true,
  });
  void (async () => {
    for await (const status of nc.status()) {
      if (status.type === 'disconnect' || status.type === 'reconnect') {
        logger.warn(
          {
            server: 'server' in status ? status.server : undefined,
          },
          `nats ${status.type}`,
        );
      } else if (status.type === 'error') {
        // Permission violations arrive here for plain publishes: a role missing a grant.
        logger.error({ err: status.error }, 'nats error');
      }
    }
  })();
  return nc;
}

/**
 * Reads a user nkey seed file (as written by `vigil creds generate` or `nsc`).
 * @throws ConfigError naming `variable` when the file is unreadable or holds no user seed.
 */
export function readNkeySeed(path: string, variable: string): Uint8Array {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`${variable}=${path} cannot be read: ${(err as Error).message}`);
  }
  // The seed is the file's one `SU...` line; nsc-style files may carry comments around it.
  const line = text
    .split('\n')
    .map((l) => l.trim())
    .find((l) => l.startsWith('SU'));
  const seed = new TextEncoder().encode(line ?? '');
  try {
    fromSeed(seed);
  } catch {
    throw new ConfigError(`${variable}=${path} does not hold a valid user nkey seed (SU...)`);
  }
  return seed;
}

/** An inbox prefix: subject tokens, no wildcards. */
const INBOX_PREFIX = /^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$/;

/** A variable holding a user's inbox prefix (`NATS_INBOX_PREFIX`, and second users'). */
export function inboxPrefixSetting<const N extends string>(name: N, meaning: string) {
  return text({
    name,
    meaning,
    pattern: INBOX_PREFIX,
    patternText: 'subject tokens without wildcards or spaces',
    type: 'subject prefix',
  });
}

/** A variable naming a user's nkey seed file (`NATS_NKEY`, and second users'). */
export function nkeySeedSetting<const N extends string>(name: N, meaning: string) {
  return file({ name, meaning, holds: 'nkey seed file', read: readNkeySeed });
}

const pemFile = (name: string, meaning: string) => file({ name, meaning, holds: 'PEM file' });

/**
 * A server the NATS client can dial: `nats://` or `tls://` and a host (and port), or a bare
 * host:port. The client reads a server as a URL and throws a TypeError with a stack at connect
 * for one it cannot parse (`::::`); it is a configuration mistake, so it is one here.
 */
function isServerUrl(item: string): boolean {
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(.*)$/.exec(item);
  if (scheme && !['nats', 'tls'].includes(scheme[1]!.toLowerCase())) return false;
  const rest = scheme ? scheme[2]! : item;
  // Read as http, a backslash is a slash and `=` a host name: neither is a server to dial.
  if (rest === '' || rest.includes('\\') || !URL.canParse(`http://${rest}`)) return false;
  const { hostname } = new URL(`http://${rest}`);
  return /^[a-z0-9._-]+$/i.test(hostname) || /^\[[0-9a-f:.]+\]$/i.test(hostname);
}

/**
 * How a node connects to NATS, with the nats CLI's variable names: `NATS_URL`; `NATS_NKEY` (seed
 * file) and `NATS_INBOX_PREFIX`, or `NATS_USER` and `NATS_PASSWORD`, or `NATS_TOKEN`; `NATS_CA`,
 * `NATS_CERT`, `NATS_KEY` (PEM files).
 */
export const NATS_SETTINGS = settingsGroup({
  id: 'nats-connection',
  title: 'NATS connection',
  shared: true,
  intro:
    'Every process connects to NATS as the user of its role (see `protocol/permissions.ts`): ' +
    "an nkey seed and that role's inbox prefix, as `npm start` and `vigil creds generate` " +
    "write them. User and password, or a token, work too. The names are the nats CLI's.",
  settings: {
    servers: list({
      name: 'NATS_URL',
      item: z.string().regex(/^\S+$/).refine(isServerUrl),
      items: 'server URLs',
      default: ['nats://127.0.0.1:4222'],
      meaning: 'The servers to connect to (`nats://`, `tls://`); the connection retries forever.',
    }),
    user: text({ name: 'NATS_USER', meaning: 'User name, with `NATS_PASSWORD`.' }),
    pass: text({ name: 'NATS_PASSWORD', secret: true, meaning: "The user's password." }),
    token: text({ name: 'NATS_TOKEN', secret: true, meaning: 'An authentication token.' }),
    nkeySeed: nkeySeedSetting(
      'NATS_NKEY',
      "File holding the user's nkey seed (`SU...`; comments around it are fine), as the " +
        'per-role credentials use.',
    ),
    inboxPrefix: inboxPrefixSetting(
      'NATS_INBOX_PREFIX',
      "Prefix of the connection's reply inboxes: a per-role user may subscribe only to its " +
        'own (`_INBOX_<role>`).',
    ),
    caFile: pemFile(
      'NATS_CA',
      "CA that signed the server's certificate (else the system's trust store).",
    ),
    certFile: pemFile('NATS_CERT', 'Client certificate, for servers that verify clients.'),
    keyFile: pemFile('NATS_KEY', "The client certificate's private key."),
  },
  rules: [
    {
      text: '`NATS_CERT` and `NATS_KEY` are set together, or neither.',
      variables: ['NATS_CERT', 'NATS_KEY'],
      check: (v) =>
        (v.certFile === undefined) !== (v.keyFile === undefined)
          ? 'set both NATS_CERT and NATS_KEY (a client certificate), or neither'
          : undefined,
    },
  ],
});

/** The parsed {@link NATS_SETTINGS}. */
export type NatsSettings = GroupValues<typeof NATS_SETTINGS>;

/** Connection options from parsed {@link NATS_SETTINGS}; `name` is shown in server monitoring. */
export function natsConnectOptions(settings: NatsSettings, name: string): NatsConnectOptions {
  const { caFile, certFile, keyFile } = settings;
  return {
    servers: settings.servers.join(','),
    name,
    ...(settings.user === undefined ? {} : { user: settings.user }),
    ...(settings.pass === undefined ? {} : { pass: settings.pass }),
    ...(settings.token === undefined ? {} : { token: settings.token }),
    ...(settings.nkeySeed === undefined ? {} : { nkeySeed: settings.nkeySeed }),
    ...(settings.inboxPrefix === undefined ? {} : { inboxPrefix: settings.inboxPrefix }),
    ...(caFile === undefined && certFile === undefined
      ? {}
      : {
          tls: {
            ...(caFile === undefined ? {} : { caFile }),
            ...(certFile === undefined || keyFile === undefined ? {} : { certFile, keyFile }),
          },
        }),
  };
}

/**
 * Connection options from `env` (the process's, or one a launcher builds for a role).
 * @throws ConfigError naming every bad variable.
 */
export function natsOptionsFromEnv(env: Env, name: string): NatsConnectOptions {
  return natsConnectOptions(parseSettings(NATS_SETTINGS, env), name);
}

/**
 * A second connection of a node, as another user (its nkey seed and inbox prefix), to the same
 * servers with the same TLS as `nats`; `undefined` without a seed. For the few tasks a node's own
 * user must not be able to do.
 */
export function secondUserOptions(
  nats: NatsConnectOptions,
  nkeySeed: Uint8Array | undefined,
  inboxPrefix: string | undefined,
): NatsConnectOptions | undefined {
  if (nkeySeed === undefined) return undefined;
  return {
    servers: nats.servers,
    name: '',
    nkeySeed,
    ...(inboxPrefix === undefined ? {} : { inboxPrefix }),
    ...(nats.tls === undefined ? {} : { tls: nats.tls }),
  };
}
