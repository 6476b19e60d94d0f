/**
 * An actor's mailbox: a JetStream pull consumer from which the actor fetches exactly as many
 * messages as it has free slots. Nothing waits in a local buffer: a buffered delivery would age
 * towards its ack wait without anyone sending in-progress acks for it, and be redelivered to
 * another actor while this one still holds it (the chaos suite caught exactly that). It can pause
 * (the circuit breaker, a drain) and resume with another concurrency (a half-open probe).
 */
import type { Consumer, ConsumerMessages, JetStreamClient, JsMsg } from '@nats-io/jetstream';

/** How long one fetch waits for messages before asking again, ms. */
const FETCH_EXPIRES_MS = 5_000;
/** How long to wait before asking again after a fetch failed, ms. */
const FETCH_RETRY_MS = 250;

/** Options of {@link openMailbox}. */
export interface MailboxOptions {
  stream: string;
  consumer: string;
  /** Messages handled at once. */
  concurrency: number;
}

/** A mailbox. */
export interface Mailbox {
  /** Messages being handled now. */
  readonly inFlight: number;
  /** True while it pulls. */
  readonly pulling: boolean;
  /**
   * Stops pulling. A delivery that arrives after the pause (from a fetch already asked for) is
   * handed back at once; in-flight handlers go on. Idempotent.
   */
  pause(): Promise<void>;
  /** Pulls again, with at most `concurrency` (default: the configured one) in flight. */
  resume(concurrency?: number): void;
  /** Resolves true once nothing is in flight, false after `timeoutMs`. */
  idle(timeoutMs: number): Promise<boolean>;
  /** Pauses for good and waits for in-flight handlers. Idempotent. */
  close(): Promise<void>;
}

/**
 * Starts pulling from `options.consumer` and calls `handle` for each message, never more than
 * the concurrency at once. `handle` must ack, nak or term the message; it must not throw.
 */
export async function openMailbox(
  js: JetStreamClient,
  options: MailboxOptions,
  handle: (msg: JsMsg) => Promise<void>,
): Promise<Mailbox> {
  const consumer = await js.consumers.get(options.stream, options.consumer);
  const mailbox = new MailboxImpl(consumer, options.concurrency, handle);
  mailbox.resume();
  return mailbox;
}

interface Session {
  stopping: boolean;
  batch: ConsumerMessages | undefined;
  loop: Promise<void>;
}

class MailboxImpl implements Mailbox {
  readonly #consumer: Consumer;
  readonly #handle: (msg: JsMsg) => Promise<void>;
  readonly #defaultConcurrency: number;
  readonly #running = new Set<Promise<void>>();
  #concurrency: number;
  #session: Session | undefined;
  #closed: Promise<void> | undefined;
  #wake: (() => void) | undefined;

  constructor(consumer: Consumer, concurrency: number, handle: (msg: JsMsg) => Promise<void>) {
    this.#consumer = consumer;
    this.#defaultConcurrency = concurrency;
    this.#concurrency = concurrency;
    this.#handle = handle;
  }

  get inFlight(): number {
    return this.#running.size;
  }

  get pulling(): boolean {
    return this.#session !== undefined && !this.#session.stopping;
  }

  resume(concurrency = this.#defaultConcurrency): void {
    if (this.#closed) return;
    this.#concurrency = concurrency;
    if (this.#session && !this.#session.stopping) {
      this.#wake?.();
      return;
    }
    const session: Session = { stopping: false, batch: undefined, loop: Promise.resolve() };
    this.#session = session;
    session.loop = this.#pull(session).catch(() => undefined);
  }

  async pause(): Promise<void> {
    const session = this.#session;
    if (!session) return;
    session.stopping = true;
    this.#session = undefined;
    this.#wake?.();
    session.batch?.stop();
    await session.loop;
  }

  async idle(timeoutMs: number): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    while (this.#running.size > 0) {
      const left = until - Date.now();
      if (left <= 0) return false;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled([...this.#running]),
        new Promise((resolve) => (timer = setTimeout(resolve, left))),
      ]);
      clearTimeout(timer);
    }
    return true;
  }

  close(): Promise<void> {
    this.#closed ??= (async () => {
      await this.pause();
      await Promise.allSettled([...this.#running]);
    })();
    return this.#closed;
  }

  async #pull(session: Session): Promise<void> {
    while (!session.stopping) {
      while (this.#running.size >= this.#concurrency && !session.stopping) {
        await new Promise<void>((resolve) => (this.#wake = resolve));
      }
      if (session.stopping) return;
      // Ask for exactly the free slots: every delivery starts at once, none waits unacked.
      const free = this.#concurrency - this.#running.size;
      try {
        session.batch = await this.#consumer.fetch({
          max_messages: free,
          expires: FETCH_EXPIRES_MS,
        });
      } catch {
        await new Promise((resolve) => setTimeout(resolve, FETCH_RETRY_MS)); // NATS down: try again
        continue;
      }
      try {
        for await (const msg of session.batch) {
          if (session.stopping) {
            msg.nak(); // arrived after the pause: hand it back for immediate redelivery
            continue;
          }
          const work: Promise<void> = this.#handle(msg).finally(() => {
            this.#running.delete(work);
            this.#wake?.();
          });
          this.#running.add(work);
        }
      } catch {
        // A fetch ends in an error when its server dies, its idle heartbeats stop, or the
        // consumer's leader moves (a cluster node was lost). The deliveries it made are being
        // handled; the mailbox must outlive it and ask again, or it stops pulling for good.
        await new Promise((resolve) => setTimeout(resolve, FETCH_RETRY_MS));
      } finally {
        session.batch = undefined;
      }
    }
  }
}
