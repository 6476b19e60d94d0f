// Types for scripts/nats-server-provision.mjs, which stays plain JavaScript so that setup can run
// on a fresh clone before `npm install`.

/** The nats-server release the project pins. */
export declare const NATS_SERVER_VERSION: '2.10.27';
/** Oldest nats-server Vigil runs on. */
export declare const MIN_NATS_SERVER_VERSION: '2.10.0';

/** Where a provisioned nats-server came from. */
export interface ProvisionedNatsServer {
  /** Absolute path of the executable. */
  path: string;
  /** Version it reports, e.g. `2.10.27`. */
  version: string;
  /** `NATS_SERVER_BIN`, `release archive`, `Debian trixie package ...`, or `cache (...)`. */
  source: string;
}

export interface EnsureNatsServerOptions {
  /** Receives one short line per step; silent when omitted. */
  log?: (line: string) => void;
}

/**
 * Returns the nats-server binary to use: NATS_SERVER_BIN, else the project cache, else downloads
 * the pinned release (release archive, then Debian trixie's package) into the cache, checked by
 * digest. Rejects with an Error saying what to do when no source works.
 */
export declare function ensureNatsServer(
  options?: EnsureNatsServerOptions,
): Promise<ProvisionedNatsServer>;

/**
 * The path of an already provisioned nats-server (NATS_SERVER_BIN or the project cache). Throws
 * telling the caller to run `npm run setup` when there is none.
 */
export declare function natsServerBin(): string;
