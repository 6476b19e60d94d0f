/**
 * `vigil creds generate`: per-role NATS users for a deployment (nodes/launcher/nats-accounts.ts).
 * It prints what it wrote and how to use it, never a seed.
 */
import { relative } from 'node:path';
import { ConfigError } from '../common/index.js';
import { generateNatsCredentials } from '../launcher/index.js';
import type { Output } from './dlq-commands.js';
import { CliError } from './edge-target.js';

/** Options of {@link credsGenerate}. */
export interface CredsGenerateOptions {
  outDir: string;
  regions: readonly string[];
  /** Edge sites: each gets an edge-gateway user and the leaf user of its link. */
  edgeSites?: readonly string[];
}

/**
 * Creates the missing seeds in `outDir`, keeps the existing ones, rewrites `accounts.conf`.
 * @throws CliError when an existing seed file is not a valid seed (it is never replaced).
 */
export function credsGenerate(options: CredsGenerateOptions, out: Output): void {
  let credentials;
  try {
    credentials = generateNatsCredentials(options);
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError(err.message);
    throw err;
  }
  const created = new Set(credentials.created);
  const rows = credentials.users.map((u) => [
    u.user,
    u.account,
    u.inboxPrefix,
    `${relative(credentials.outDir, u.seedFile)} (${created.has(u.user) ? 'new' : 'kept'})`,
  ]);
  const header = ['user', 'account', 'inbox prefix', 'seed file'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    `  ${cells.map((c, i) => c.padEnd(widths[i]!)).join('  ')}`.trimEnd() + '\n';

  out.write(
    `NATS credentials in ${credentials.outDir} (${created.size} new, ` +
      `${credentials.users.length - created.size} kept; seeds are mode 0600, keep them secret):\n`,
  );
  out.write(line(header));
  for (const row of rows) out.write(line(row));
  out.write(
    `\n${credentials.accountsFile}: the accounts and users, public keys only.\n` +
      'Include it in the nats-server configuration (a path relative to that file):\n' +
      '  include "<path to>/accounts.conf"\n' +
      'and start each node as its user:\n' +
      '  NATS_NKEY=<seed file> NATS_INBOX_PREFIX=<inbox prefix>\n' +
      '(a gateway with VIGIL_ADMIN_KEYS also needs VIGIL_ADMIN_NATS_NKEY and\n' +
      'VIGIL_ADMIN_NATS_INBOX_PREFIX of the admin user).\n' +
      "An edge site's nats-server presents the seed of its leaf-<site> user on its link\n" +
      '(VIGIL_NATS_LEAF_SEED of deploy/nats/edge-leaf.conf).\n',
  );
}
