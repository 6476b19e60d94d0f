/**
 * How every Vigil process connects to NATS: reconnect forever (an edge outlives broker restarts),
 * and no async stack traces on the hot path (measured: capturing one per request and publish cost
 * a third of the gateway's throughput). Credentials are per role: an nkey seed and the role's own
 * inbox prefix (see protocol/permissions.ts); user/password and token still work.
 */
import { accessSync, constants as fsConstants, readFileSync } from 'node:fs';
import { fromSeed } from '@nats-io/nkeys';
import {
  connect,
  nkeyAuthenticator,
  type ConnectionOptions,
  type NatsConnection,
  type TlsOptions,
} from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { ConfigError } from './env.js';

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

/**
 * An inbox prefix from `env[variable]`, or `undefined` when unset.
 * @throws ConfigError when it is not a subject without wildcards.
 */
export function inboxPrefixFromEnv(env: NodeJS.ProcessEnv, variable: string): string | undefined {
  const prefix = env[variable];
  if (!prefix) return undefined;
  if (!/^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$/.test(prefix)) {
    throw new ConfigError(
      `${variable}=${prefix} must be subject tokens without wildcards or spaces`,
    );
  }
  return prefix;
}

function readableFile(env: NodeJS.ProcessEnv, variable: string): string | undefined {
  const path = env[variable];
  if (!path) return undefined;
  try {
    accessSync(path, fsConstants.R_OK);
  } catch (err) {
    throw new ConfigError(`${variable}=${path} cannot be read: ${(err as Error).message}`);
  }
  return path;
}

/**
 * Reads NATS connection settings from the environment (node `main.ts` files only), with the
 * nats CLI's names: `NATS_URL`; `NATS_NKEY` (seed file) and `NATS_INBOX_PREFIX`, or `NATS_USER`
 * and `NATS_PASSWORD`, or `NATS_TOKEN`; `NATS_CA`, `NATS_CERT`, `NATS_KEY` (PEM files).
 * @throws ConfigError naming the first bad variable.
 */
export function natsOptionsFromEnv(env: NodeJS.ProcessEnv, name: string): NatsConnectOptions {
  const options: NatsConnectOptions = { servers: env['NATS_URL'] ?? 'nats://127.0.0.1:4222', name };
  if (env['NATS_USER']) options.user = env['NATS_USER'];
  if (env['NATS_PASSWORD']) options.pass = env['NATS_PASSWORD'];
  if (env['NATS_TOKEN']) options.token = env['NATS_TOKEN'];
  if (env['NATS_NKEY']) options.nkeySeed = readNkeySeed(env['NATS_NKEY'], 'NATS_NKEY');
  const inboxPrefix = inboxPrefixFromEnv(env, 'NATS_INBOX_PREFIX');
  if (inboxPrefix !== undefined) options.inboxPrefix = inboxPrefix;
  const caFile = readableFile(env, 'NATS_CA');
  const certFile = readableFile(env, 'NATS_CERT');
  const keyFile = readableFile(env, 'NATS_KEY');
  if (Boolean(certFile) !== Boolean(keyFile)) {
    throw new ConfigError('set both NATS_CERT and NATS_KEY (a client certificate), or neither');
  }
  if (caFile || certFile) {
    options.tls = {
      ...(caFile ? { caFile } : {}),
      ...(certFile && keyFile ? { certFile, keyFile } : {}),
    };
  }
  return options;
}

/**
 * A second connection of a node, as another user (its seed in `<prefix>_NKEY`, its inbox prefix
 * in `<prefix>_INBOX_PREFIX`), to the same servers with the same TLS as `nats`; `undefined` when
 * `<prefix>_NKEY` is unset. For the few tasks a node's own user must not be able to do.
 */
export function secondUserOptionsFromEnv(
  env: NodeJS.ProcessEnv,
  prefix: string,
  nats: NatsConnectOptions,
): NatsConnectOptions | undefined {
  const seedFile = env[`${prefix}_NKEY`];
  if (!seedFile) return undefined;
  const inboxPrefix = inboxPrefixFromEnv(env, `${prefix}_INBOX_PREFIX`);
  return {
    servers: nats.servers,
    name: '',
    nkeySeed: readNkeySeed(seedFile, `${prefix}_NKEY`),
    ...(inboxPrefix === undefined ? {} : { inboxPrefix }),
    ...(nats.tls === undefined ? {} : { tls: nats.tls }),
  };
}
