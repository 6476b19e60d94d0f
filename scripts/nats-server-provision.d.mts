// Types for scripts/nats-server-provision.mjs, which stays plain JavaScript so that setup can run
// on a fresh clone before `npm install`.

/** The release the official archive source fetches, and the version the suite last ran against. */
export declare const NATS_SERVER_VERSION: '2.15.1';
/** Oldest nats-server Vigil accepts from any source (the 2.12 line from its advisory fixes on). */
export declare const MIN_NATS_SERVER_VERSION: '2.12.7';

/** Where a provisioned nats-server came from. */
export interface ProvisionedNatsServer {
  /** Absolute path of the executable. */
  path: string;
  /** Version it reports, e.g. `2.15.1`. */
  version: string;
  /**
   * `NATS_SERVER_BIN`, `release archive v2.15.1`, `Debian testing (forky) package
   * nats-server=2.15.1-1`, or `cache: ...` with one of those.
   */
  source: string;
}

export interface EnsureNatsServerOptions {
  /** Receives one short line per step; silent when omitted. */
  log?: (line: string) => void;
}

/**
 * Returns the nats-server binary to use: NATS_SERVER_BIN, else the project cache, else provisions
 * one into the cache (the pinned release archive checked against its SHA256SUMS, then Debian's
 * package from testing or unstable, any version >= MIN_NATS_SERVER_VERSION, checked against the
 * suite's signed index). Rejects with an Error saying what to do when no source works.
 */
export declare function ensureNatsServer(
  options?: EnsureNatsServerOptions,
): Promise<ProvisionedNatsServer>;

/**
 * The path of an already provisioned nats-server (NATS_SERVER_BIN or the project cache). Throws
 * telling the caller to run `npm run setup` when there is none.
 */
export declare function natsServerBin(): string;
