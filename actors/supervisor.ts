/**
 * A one-for-one supervisor in the manner of Erlang/OTP and Akka: each child that dies is
 * restarted on its own, its starts spaced by an exponential backoff, a child that stops answering pings is
 * killed and restarted, and a child that keeps dying (more than `maxRestarts` restarts within
 * `withinMs`) escalates: the supervisor stops everything and reports it, and the host, which owns
 * the process, marks itself unhealthy and exits non-zero. Restarting in place cannot mend a fault
 * that recurs that fast; a fresh process, elsewhere or later, might.
 *
 * It knows nothing of NATS or models: anything with an `exited` promise and a `terminate()` can
 * be supervised. Children are permanent: whatever ends them, short of `stop()`, they come back.
 */

import { ErrorCode, RetryableError, TerminalError } from '../protocol/index.js';

/** Delay before the first restart, ms. */
export const DEFAULT_BACKOFF_INITIAL_MS = 50;
/** Longest delay between restarts, ms. */
export const DEFAULT_BACKOFF_MAX_MS = 5_000;
/** Growth of the delay from one restart to the next. */
export const DEFAULT_BACKOFF_FACTOR = 2;
/** Restarts allowed within {@link DEFAULT_INTENSITY_WITHIN_MS}; one more escalates. */
export const DEFAULT_INTENSITY_MAX_RESTARTS = 5;
/** The window of the restart intensity, ms. */
export const DEFAULT_INTENSITY_WITHIN_MS = 60_000;
/** How often a child with `ping()` is pinged, ms. */
export const DEFAULT_PING_INTERVAL_MS = 1_000;
/** How long a ping may take before the child counts as hung, ms. */
export const DEFAULT_PING_TIMEOUT_MS = 3_000;
/** Uptime after which a child's next restart starts the backoff over, ms. */
export const DEFAULT_STABLE_AFTER_MS = 10_000;
/** How long `SupervisedHandle.current()` waits for a restarting child, ms. */
export const DEFAULT_CURRENT_TIMEOUT_MS = 10_000;
/**
 * How long a child the supervisor terminates (hung, restarted on purpose) may take to settle
 * `exited`; past it the supervisor restarts anyway rather than wait on a child that cannot die.
 */
export const DEFAULT_TERMINATE_TIMEOUT_MS = 5_000;
// Callers waiting in `current()` for one child; beyond, they are refused at once.
const MAX_WAITERS = 10_000;

/** What the supervisor needs of a child. */
export interface SupervisedChild {
  /** Settles when the child is gone, for whatever reason. Must never reject. */
  readonly exited: Promise<{ reason: string; unexpected: boolean }>;
  /** Resolves true when the child answers within `timeoutMs`; a child without it is not pinged. */
  ping?(timeoutMs: number): Promise<boolean>;
  /** Stops the child; `exited` settles. */
  terminate(): Promise<void>;
}

/** Options of {@link createSupervisor}. */
export interface SupervisorOptions {
  /**
   * Backoff of restart n (1-based, since the child was last stable) =
   * min(maxMs, initialMs * factor^(n-1)): the least time from one start of the child to the
   * next. A child that dies sooner than that after it started waits out the rest before it is
   * started again; one that was up longer is started again at once. Defaults
   * {@link DEFAULT_BACKOFF_INITIAL_MS}, {@link DEFAULT_BACKOFF_MAX_MS},
   * {@link DEFAULT_BACKOFF_FACTOR}.
   */
  backoff?: { initialMs?: number; maxMs?: number; factor?: number };
  /**
   * Restart intensity: more than `maxRestarts` restarts of one child within `withinMs` escalates.
   * Defaults {@link DEFAULT_INTENSITY_MAX_RESTARTS} in {@link DEFAULT_INTENSITY_WITHIN_MS}.
   */
  intensity?: { maxRestarts?: number; withinMs?: number };
  /**
   * Liveness: every `pingIntervalMs` a child with `ping()` must answer within `pingTimeoutMs`,
   * else it is terminated as hung and restarted. Defaults {@link DEFAULT_PING_INTERVAL_MS},
   * {@link DEFAULT_PING_TIMEOUT_MS}.
   */
  liveness?: { pingIntervalMs?: number; pingTimeoutMs?: number };
  /** A child that stays up this long resets the backoff to `initialMs`, ms. Default {@link DEFAULT_STABLE_AFTER_MS}. */
  stableAfterMs?: number;
  /** How long a terminated child may take to exit, ms. Default {@link DEFAULT_TERMINATE_TIMEOUT_MS}. */
  terminateTimeoutMs?: number;
  /** Receives every lifecycle event; must not throw (what it throws is ignored). */
  onEvent?: (event: SupervisorEvent) => void;
}

/** What happened to a supervised child. */
export type SupervisorEvent =
  | {
      type: 'started';
      name: string;
      /** 0 for the first start, else the number of this restart. */
      attempt: number;
      /** How long `start()` took, ms. */
      startMs: number;
      /** Restarts only: from the death of the previous child to this one being up, ms. */
      downMs?: number;
    }
  | { type: 'exited'; name: string; reason: string; unexpected: boolean }
  | { type: 'hung'; name: string }
  | {
      type: 'restarting';
      name: string;
      /** The backoff of this restart: least time between the child's last start and the next. */
      delayMs: number;
      /** What is left of it once the child's uptime is counted: the wait before the start. */
      waitMs: number;
      restartsInWindow: number;
    }
  | { type: 'start-failed'; name: string; attempt: number; error: string }
  | { type: 'escalated'; name: string; restarts: number; withinMs: number };

/** What {@link Supervisor.escalated} resolves with. */
export interface Escalation {
  /** The child that restarted too often. */
  name: string;
  /** Restarts it had within the window. */
  restarts: number;
  withinMs: number;
}

/** A one-for-one supervisor. */
export interface Supervisor {
  /**
   * Starts `start()` under supervision under a unique `name`; resolves with a handle once the
   * first start succeeded. A first start that fails rejects, and nothing is supervised: a child
   * that cannot start once is a configuration error, not a crash.
   */
  supervise<C extends SupervisedChild>(
    name: string,
    start: () => Promise<C>,
  ): Promise<SupervisedHandle<C>>;
  /**
   * Resolves when a child exceeded the restart intensity; every child has been stopped by then
   * and nothing restarts. The host then exits non-zero. Never rejects; stays pending otherwise.
   */
  readonly escalated: Promise<Escalation>;
  /** Stops every child, no more restarts. Idempotent; resolves once every child has exited. */
  stop(): Promise<void>;
}

/** The supervisor's hold on one child across its restarts. */
export interface SupervisedHandle<C> {
  /**
   * The running child, or waits (at most `timeoutMs`, default {@link DEFAULT_CURRENT_TIMEOUT_MS})
   * while it is being restarted. Rejects with `ChildUnavailableError` (retryable) on timeout, or
   * when the child is stopped or escalated.
   */
  current(timeoutMs?: number): Promise<C>;
  /** The child if it is up right now. */
  readonly child: C | undefined;
  readonly state: 'running' | 'restarting' | 'stopped' | 'escalated';
  /** Restarts so far, failed starts included. */
  readonly restarts: number;
  /**
   * Terminates the current child on purpose and starts a new one. It counts as a restart (backoff
   * and intensity), since a caller restarts a child that misbehaved. Resolves once the new child
   * is up; rejects with `ChildUnavailableError` if the supervisor stops or escalates first.
   */
  restart(reason: string): Promise<void>;
}

/**
 * A supervised child is not available: it is restarting and did not come back in time, or it was
 * stopped or escalated. Retryable: the work can go to this child later or to another node.
 */
export class ChildUnavailableError extends RetryableError {
  override name = 'ChildUnavailableError';
  constructor(message: string) {
    super(message, ErrorCode.Unavailable);
  }
}

/** Creates a supervisor with no children; add them with `supervise`. */
export function createSupervisor(options: SupervisorOptions = {}): Supervisor {
  return new SupervisorImpl(resolveOptions(options));
}

interface ResolvedOptions {
  initialMs: number;
  maxMs: number;
  factor: number;
  maxRestarts: number;
  withinMs: number;
  pingIntervalMs: number;
  pingTimeoutMs: number;
  stableAfterMs: number;
  terminateTimeoutMs: number;
  onEvent: (event: SupervisorEvent) => void;
}

function resolveOptions(options: SupervisorOptions): ResolvedOptions {
  const resolved = {
    initialMs: options.backoff?.initialMs ?? DEFAULT_BACKOFF_INITIAL_MS,
    maxMs: options.backoff?.maxMs ?? DEFAULT_BACKOFF_MAX_MS,
    factor: options.backoff?.factor ?? DEFAULT_BACKOFF_FACTOR,
    maxRestarts: options.intensity?.maxRestarts ?? DEFAULT_INTENSITY_MAX_RESTARTS,
    withinMs: options.intensity?.withinMs ?? DEFAULT_INTENSITY_WITHIN_MS,
    pingIntervalMs: options.liveness?.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS,
    pingTimeoutMs: options.liveness?.pingTimeoutMs ?? DEFAULT_PING_TIMEOUT_MS,
    stableAfterMs: options.stableAfterMs ?? DEFAULT_STABLE_AFTER_MS,
    terminateTimeoutMs: options.terminateTimeoutMs ?? DEFAULT_TERMINATE_TIMEOUT_MS,
  };
  for (const [key, value] of Object.entries(resolved)) {
    if (!Number.isFinite(value) || value < 0) {
      throw new TerminalError(
        `supervisor option ${key} must be a finite number >= 0`,
        ErrorCode.InvalidRequest,
      );
    }
  }
  if (resolved.factor < 1) {
    throw new TerminalError(
      'supervisor option backoff.factor must be >= 1',
      ErrorCode.InvalidRequest,
    );
  }
  if (resolved.pingIntervalMs === 0) {
    throw new TerminalError(
      'supervisor option liveness.pingIntervalMs must be > 0',
      ErrorCode.InvalidRequest,
    );
  }
  const onEvent = options.onEvent;
  return {
    ...resolved,
    onEvent: (event) => {
      try {
        onEvent?.(event);
      } catch {
        // An observer's bug must not stop restarts.
      }
    },
  };
}

class SupervisorImpl implements Supervisor {
  readonly escalated: Promise<Escalation>;
  readonly #options: ResolvedOptions;
  readonly #children = new Map<string, Supervision<SupervisedChild>>();
  #settleEscalated!: (escalation: Escalation) => void;
  #stopping: Promise<void> | undefined;

  constructor(options: ResolvedOptions) {
    this.#options = options;
    this.escalated = new Promise((resolve) => (this.#settleEscalated = resolve));
  }

  async supervise<C extends SupervisedChild>(
    name: string,
    start: () => Promise<C>,
  ): Promise<SupervisedHandle<C>> {
    if (this.#stopping !== undefined) {
      throw new ChildUnavailableError(`supervisor is stopped; cannot supervise ${name}`);
    }
    if (this.#children.has(name)) {
      throw new TerminalError(`a child named ${name} is already supervised`, ErrorCode.Conflict);
    }
    const supervision = new Supervision<C>(name, start, this.#options, (escalation) =>
      this.#escalate(escalation),
    );
    // Claimed before the first start so a second supervise() with the same name fails at once.
    this.#children.set(name, supervision);
    try {
      await supervision.startFirst();
    } catch (err) {
      this.#children.delete(name);
      throw err;
    }
    if (this.#stopping !== undefined) {
      // stop() ran while the first start was under way.
      await supervision.stop('stopped');
      throw new ChildUnavailableError(`supervisor stopped while ${name} was starting`);
    }
    return supervision;
  }

  stop(): Promise<void> {
    this.#stopping ??= Promise.all(
      [...this.#children.values()].map((supervision) => supervision.stop('stopped')),
    ).then(() => undefined);
    return this.#stopping;
  }

  #escalate(escalation: Escalation): void {
    this.#options.onEvent({ type: 'escalated', ...escalation });
    this.#settleEscalated(escalation);
    // As in OTP: a supervisor that gives up takes all its children down with it.
    void this.stop();
  }
}

interface Waiter<C> {
  resolve(child: C): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout | undefined;
}

/** One child across its restarts; the handle callers hold. */
class Supervision<C extends SupervisedChild> implements SupervisedHandle<C> {
  state: 'running' | 'restarting' | 'stopped' | 'escalated' = 'restarting';
  restarts = 0;
  child: C | undefined;

  readonly #name: string;
  readonly #start: () => Promise<C>;
  readonly #o: ResolvedOptions;
  readonly #onEscalate: (escalation: Escalation) => void;
  /** Times of the restarts within the intensity window, oldest first. */
  #window: number[] = [];
  /** Restarts since the child was last stable: picks the backoff delay. */
  #streak = 0;
  #startedAt = 0;
  #waiters = new Set<Waiter<C>>();
  /** Why the supervisor itself is ending the current child (hung, restart), if it is. */
  #ending: { reason: string; unexpected: boolean } | undefined;
  #liveness: NodeJS.Timeout | undefined;
  #backoff: { timer: NodeJS.Timeout; wake(): void } | undefined;
  /** The restart in progress, if any: `stop()` waits for it to drop the child it may start. */
  #restarting: Promise<void> = Promise.resolve();
  /** A child the supervisor is terminating (hung, restarted on purpose), until it is gone. */
  #dying: Promise<unknown> = Promise.resolve();
  /** Bumped per child so events of a replaced child are ignored. */
  #generation = 0;

  constructor(
    name: string,
    start: () => Promise<C>,
    options: ResolvedOptions,
    onEscalate: (escalation: Escalation) => void,
  ) {
    this.#name = name;
    this.#start = start;
    this.#o = options;
    this.#onEscalate = onEscalate;
  }

  async startFirst(): Promise<void> {
    const began = performance.now();
    const child = await this.#start();
    this.#adopt(child, 0, performance.now() - began, undefined);
  }

  current(timeoutMs = DEFAULT_CURRENT_TIMEOUT_MS): Promise<C> {
    if (this.state === 'running' && this.child !== undefined) return Promise.resolve(this.child);
    if (this.state !== 'restarting') return Promise.reject(this.#unavailable());
    return this.#nextChild(timeoutMs);
  }

  async restart(reason: string): Promise<void> {
    const child = this.child;
    if (this.state === 'stopped' || this.state === 'escalated') throw this.#unavailable();
    const next = this.#nextChild(undefined);
    // Already restarting: the caller's wish is being granted.
    if (this.state === 'running' && child !== undefined) {
      this.#end(child, { reason, unexpected: false });
    }
    await next;
  }

  /** Waits for the next child to be adopted; `timeoutMs` undefined waits until stop. */
  #nextChild(timeoutMs: number | undefined): Promise<C> {
    if (this.#waiters.size >= MAX_WAITERS) {
      return Promise.reject(
        new ChildUnavailableError(`${this.#name} is restarting and ${MAX_WAITERS} callers wait`),
      );
    }
    return new Promise<C>((resolve, reject) => {
      const waiter: Waiter<C> = { resolve, reject, timer: undefined };
      if (timeoutMs !== undefined) {
        waiter.timer = setTimeout(() => {
          this.#waiters.delete(waiter);
          reject(
            new ChildUnavailableError(`${this.#name} did not come back within ${timeoutMs} ms`),
          );
        }, timeoutMs);
      }
      this.#waiters.add(waiter);
    });
  }

  /** Stops the child for good, and waits until no child of it is left. */
  async stop(state: 'stopped' | 'escalated'): Promise<void> {
    await this.#halt(state);
    await Promise.all([this.#restarting, this.#dying]);
  }

  /** `state` ends as `stopped` unless it escalated. */
  async #halt(state: 'stopped' | 'escalated'): Promise<void> {
    if (this.state === 'stopped' || this.state === 'escalated') return;
    this.state = state;
    this.#stopLiveness();
    if (this.#backoff !== undefined) {
      clearTimeout(this.#backoff.timer);
      this.#backoff.wake();
    }
    this.#rejectWaiters();
    const child = this.child;
    this.child = undefined;
    this.#generation += 1;
    if (child !== undefined) {
      await settleWithin(child.terminate(), this.#o.terminateTimeoutMs);
    }
  }

  #adopt(child: C, attempt: number, startMs: number, diedAt: number | undefined): void {
    this.#generation += 1;
    const generation = this.#generation;
    this.child = child;
    this.state = 'running';
    this.#startedAt = performance.now();
    this.#ending = undefined;
    const downMs = diedAt === undefined ? undefined : this.#startedAt - diedAt;
    this.#o.onEvent({
      type: 'started',
      name: this.#name,
      attempt,
      startMs,
      ...(downMs === undefined ? {} : { downMs }),
    });
    for (const waiter of this.#waiters) {
      clearTimeout(waiter.timer);
      waiter.resolve(child);
    }
    this.#waiters.clear();
    void child.exited.then(
      (exit) => this.#onExit(generation, exit),
      // A child whose `exited` rejects broke its contract; it is gone all the same.
      (err: unknown) =>
        this.#onExit(generation, { reason: `exited rejected: ${String(err)}`, unexpected: true }),
    );
    this.#startLiveness(child, generation);
  }

  #startLiveness(child: C, generation: number): void {
    this.#stopLiveness();
    if (child.ping === undefined) return;
    let inFlight = false;
    this.#liveness = setInterval(() => {
      // One ping at a time: a slow answer must not pile up pings behind it.
      if (inFlight) return;
      inFlight = true;
      void this.#probe(child).then((alive) => {
        inFlight = false;
        if (alive || generation !== this.#generation || this.#ending !== undefined) return;
        this.#o.onEvent({ type: 'hung', name: this.#name });
        this.#end(child, {
          reason: `hung: no answer to a ping within ${this.#o.pingTimeoutMs} ms`,
          unexpected: true,
        });
      });
    }, this.#o.pingIntervalMs);
    // Liveness alone must not keep a process alive; the children and the host do that.
    this.#liveness.unref();
  }

  async #probe(child: C): Promise<boolean> {
    // The supervisor keeps its own clock: a child's ping that never settles still fails.
    try {
      const answer = await settleWithin(
        child.ping?.(this.#o.pingTimeoutMs) ?? Promise.resolve(true),
        this.#o.pingTimeoutMs + 100,
      );
      return answer === true;
    } catch {
      return false;
    }
  }

  #stopLiveness(): void {
    clearInterval(this.#liveness);
    this.#liveness = undefined;
  }

  /** The supervisor ends `child` itself; the restart follows from its exit (or a timeout). */
  #end(child: C, why: { reason: string; unexpected: boolean }): void {
    if (this.#ending !== undefined) return;
    this.#ending = why;
    this.#stopLiveness();
    // Callers from now on wait for the next child rather than get one on its way out.
    this.child = undefined;
    this.state = 'restarting';
    const generation = this.#generation;
    this.#dying = settleWithin(child.terminate(), this.#o.terminateTimeoutMs).then(() => {
      // A child that did not settle `exited` in time is abandoned and replaced anyway.
      this.#onExit(generation, why);
    });
  }

  #onExit(generation: number, exit: { reason: string; unexpected: boolean }): void {
    if (generation !== this.#generation) return;
    if (this.state === 'stopped' || this.state === 'escalated') return;
    const diedAt = performance.now();
    const uptime = diedAt - this.#startedAt;
    this.#generation += 1;
    this.#stopLiveness();
    this.child = undefined;
    this.state = 'restarting';
    // The supervisor's own reason (hung, restart on purpose) says more than "terminated".
    const reported = this.#ending ?? exit;
    this.#ending = undefined;
    this.#o.onEvent({ type: 'exited', name: this.#name, ...reported });
    if (uptime >= this.#o.stableAfterMs) this.#streak = 0;
    this.#restarting = this.#restartLoop(diedAt, uptime);
  }

  /**
   * Starts the child again, once the backoff allows. The backoff spaces starts, not deaths: it
   * is there to keep a child that dies as it starts from burning the host in a loop, and a child
   * that was up longer than the delay has kept its starts that far apart already, so it waits
   * for nothing (a kill under load no longer costs the executor a second of downtime on top of
   * its boot). A failed start was up for no time: the next attempt waits the whole delay.
   */
  async #restartLoop(diedAt: number, uptime: number): Promise<void> {
    let upMs = uptime;
    for (;;) {
      if (this.state !== 'restarting') return;
      const now = performance.now();
      this.#window = this.#window.filter((at) => now - at < this.#o.withinMs);
      this.#window.push(now);
      this.restarts += 1;
      this.#streak += 1;
      if (this.#window.length > this.#o.maxRestarts) {
        await this.#halt('escalated');
        this.#onEscalate({
          name: this.#name,
          restarts: this.#window.length,
          withinMs: this.#o.withinMs,
        });
        return;
      }
      const delayMs = Math.min(
        this.#o.maxMs,
        this.#o.initialMs * this.#o.factor ** (this.#streak - 1),
      );
      const waitMs = Math.max(0, Math.round(delayMs - upMs));
      upMs = 0;
      this.#o.onEvent({
        type: 'restarting',
        name: this.#name,
        delayMs,
        waitMs,
        restartsInWindow: this.#window.length,
      });
      await new Promise<void>((wake) => {
        this.#backoff = { timer: setTimeout(wake, waitMs), wake };
      });
      this.#backoff = undefined;
      if (this.state !== 'restarting') return;
      const attempt = this.restarts;
      const began = performance.now();
      let child: C;
      try {
        child = await this.#start();
      } catch (err) {
        this.#o.onEvent({
          type: 'start-failed',
          name: this.#name,
          attempt,
          error: err instanceof Error ? err.message : String(err),
        });
        continue;
      }
      if (this.state !== 'restarting') {
        // Stopped while starting: the new child has no place to go.
        await settleWithin(child.terminate(), this.#o.terminateTimeoutMs);
        return;
      }
      this.#adopt(child, attempt, performance.now() - began, diedAt);
      return;
    }
  }

  #rejectWaiters(): void {
    for (const waiter of this.#waiters) {
      clearTimeout(waiter.timer);
      waiter.reject(this.#unavailable());
    }
    this.#waiters.clear();
  }

  #unavailable(): ChildUnavailableError {
    return new ChildUnavailableError(`${this.#name} is ${this.state}`);
  }
}

/**
 * Waits for `promise` at most `ms`; resolves `undefined` on timeout and on rejection, since the
 * callers here only need to know it is over or not worth waiting for.
 */
async function settleWithin<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([promise.catch(() => undefined), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
