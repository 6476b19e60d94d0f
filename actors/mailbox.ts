/**
 * An actor's mailbox: a JetStream pull consumer read with bounded prefetch. At most
 * `concurrency` messages are being handled and at most `concurrency` more are buffered, so a slow
 * model never hoards work that an idle actor elsewhere could take. It can pause (the circuit
 * breaker, a restarting model, a drain) and resume with another concurrency (a half-open probe).
 */
import type { ConsumerMessages, JetStreamClient, JsMsg, Consumer } from '@nats-io/jetstream';

/** Options of {@link openMailbox}. */
export interface MailboxOptions {
  stream: string;
  consumer: string;
  /** Messages handled at once; also the prefetch. */
  concurrency: number;
}

/** A mailbox. */
export interface Mailbox {
  /** Messages being handled now. */
  readonly inFlight: number;
  /** True while it pulls. */
  readonly pulling: boolean;
  /**
   * Stops pulling. Deliveries buffered but not yet handled are handed back at once (a nak counts
   * as a delivery: at most `concurrency` of them); in-flight handlers go on. Idempotent.
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
  messages: ConsumerMessages;
  stopping: boolean;
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
    // consume() is synchronous up to its first pull; its promise only fails on a missing
    // consumer, which the loop reports by ending.
    const session = { stopping: false } as Session;
    this.#session = session;
    session.loop = this.#consumer
      .consume({ max_messages: concurrency })
      .then((messages) => {
        session.messages = messages;
        if (session.stopping) return messages.close().then(() => undefined);
        return this.#pull(session);
      })
      .catch(() => undefined);
  }

  async pause(): Promise<void> {
    const session = this.#session;
    if (!session) return;
    session.stopping = true;
    this.#session = undefined;
    this.#wake?.();
    await session.messages?.close().catch(() => undefined);
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
    const iterator = session.messages[Symbol.asyncIterator]();
    for (;;) {
      // Take a message only when a slot is free: consume() issues its next pull request only as
      // messages are taken, so this is what bounds the prefetch.
      while (this.#running.size >= this.#concurrency && !session.stopping) {
        await new Promise<void>((resolve) => (this.#wake = resolve));
      }
      const next = await iterator.next();
      if (next.done) return;
      const msg = next.value;
      if (session.stopping) {
        msg.nak(); // stopped while it was buffered: hand it back for immediate redelivery
        continue;
      }
      const work: Promise<void> = this.#handle(msg).finally(() => {
        this.#running.delete(work);
        this.#wake?.();
      });
      this.#running.add(work);
    }
  }
}
