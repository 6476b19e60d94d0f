/**
 * Requests to stop tasks, as an actor host sees them: a watch on the region's cancel bucket,
 * where gateways write them (`CancelRequest`, keyed by task id). A request takes effect at once,
 * or at its `after` (an abandoned stream's grace; a reader that resumes removes it first). Whoever
 * listens is told when one takes effect: the actor running the task aborts it, and a task still
 * queued is ended there and then.
 *
 * Cancels are rare; the watch costs nothing on the hot path, where a delivery is checked against
 * an in-memory map.
 */
import type { KV } from '@nats-io/kv';
import type { Logger } from 'pino';
import { cancelRequestSchema, decodeAs, type CancelRequest } from '../protocol/index.js';

/**
 * Cancels remembered at most; past it the oldest are forgotten (their tasks have long ended, or
 * will end at their deadline). Bounds the host's memory whatever the bucket holds.
 */
const MAX_REMEMBERED = 100_000;
/** How long a broken watch waits before it is opened again, ms. */
const WATCH_RETRY_MS = 1_000;

/** What a host knows of the region's cancels. */
export interface Cancellations {
  /** The cancel of `taskId` in effect now, if there is one. */
  inEffect(taskId: string): CancelRequest | undefined;
  /**
   * Calls `listener` each time a cancel takes effect while the host watches (not for those
   * already in the bucket when it started: their tasks are checked on delivery).
   */
  onEffect(listener: (request: CancelRequest) => void): void;
  close(): void;
}

/** Watches `bucket` (the region's cancel bucket) until closed. */
export function watchCancellations(bucket: KV, log: Logger): Cancellations {
  return new CancellationsImpl(bucket, log);
}

class CancellationsImpl implements Cancellations {
  readonly #known = new Map<string, CancelRequest>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  readonly #listeners: ((request: CancelRequest) => void)[] = [];
  #closed = false;
  #stopWatch: (() => void) | undefined;

  constructor(
    private readonly bucket: KV,
    private readonly log: Logger,
  ) {
    void this.#watch();
  }

  inEffect(taskId: string): CancelRequest | undefined {
    const request = this.#known.get(taskId);
    return request && (request.after ?? 0) <= Date.now() ? request : undefined;
  }

  onEffect(listener: (request: CancelRequest) => void): void {
    this.#listeners.push(listener);
  }

  close(): void {
    this.#closed = true;
    this.#stopWatch?.();
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
  }

  async #watch(): Promise<void> {
    while (!this.#closed) {
      try {
        const watch = await this.bucket.watch();
        this.#stopWatch = () => watch.stop();
        for await (const entry of watch) {
          if (entry.operation === 'PUT') this.#remember(entry.value, entry.isUpdate);
          else this.#forget(entry.key);
        }
      } catch (err) {
        this.log.warn({ err }, 'cancel watch broke; opening it again');
      }
      if (!this.#closed) await new Promise((resolve) => setTimeout(resolve, WATCH_RETRY_MS));
    }
  }

  #remember(value: Uint8Array, live: boolean): void {
    let request: CancelRequest;
    try {
      request = decodeAs(cancelRequestSchema, value, 'cancel request');
    } catch (err) {
      this.log.warn({ err }, 'unreadable cancel request ignored');
      return;
    }
    this.#forget(request.taskId);
    this.#known.set(request.taskId, request);
    if (this.#known.size > MAX_REMEMBERED) {
      const oldest = this.#known.keys().next().value!;
      this.#forget(oldest);
    }
    if (!live) return;
    const waitMs = (request.after ?? 0) - Date.now();
    if (waitMs <= 0) {
      this.#tell(request);
      return;
    }
    const timer = setTimeout(() => {
      this.#timers.delete(request.taskId);
      this.#tell(request);
    }, waitMs);
    timer.unref();
    this.#timers.set(request.taskId, timer);
  }

  #forget(taskId: string): void {
    this.#known.delete(taskId);
    clearTimeout(this.#timers.get(taskId));
    this.#timers.delete(taskId);
  }

  #tell(request: CancelRequest): void {
    for (const listener of this.#listeners) {
      try {
        listener(request);
      } catch (err) {
        this.log.error({ err, task_id: request.taskId }, 'cancel listener failed');
      }
    }
  }
}
