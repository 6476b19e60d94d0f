/**
 * An actor's mailbox: a JetStream pull consumer read with bounded prefetch. At most
 * `concurrency` messages are being handled and at most `concurrency` more are buffered, so a slow
 * model never hoards work that an idle actor elsewhere could take.
 */
import type { ConsumerMessages, JetStreamClient, JsMsg } from '@nats-io/jetstream';

/** Options of {@link openMailbox}. */
export interface MailboxOptions {
  stream: string;
  consumer: string;
  /** Messages handled at once; also the prefetch. */
  concurrency: number;
}

/** A running mailbox. */
export interface Mailbox {
  /** Messages being handled now. */
  readonly inFlight: number;
  /** Stops pulling, hands buffered messages back at once, waits for in-flight handlers. Idempotent. */
  close(): Promise<void>;
  /** Resolves when the pull loop has ended. */
  readonly done: Promise<void>;
}

/**
 * Starts pulling from `options.consumer` and calls `handle` for each message, never more than
 * `concurrency` at once. `handle` must ack, nak or term the message; it must not throw.
 */
export async function openMailbox(
  js: JetStreamClient,
  options: MailboxOptions,
  handle: (msg: JsMsg) => Promise<void>,
): Promise<Mailbox> {
  const consumer = await js.consumers.get(options.stream, options.consumer);
  const messages: ConsumerMessages = await consumer.consume({ max_messages: options.concurrency });
  let inFlight = 0;
  let closing = false;
  const running = new Set<Promise<void>>();
  let slotFreed: (() => void) | undefined;

  const loop = async (): Promise<void> => {
    const iterator = messages[Symbol.asyncIterator]();
    for (;;) {
      // Take a message only when a slot is free: consume() issues its next pull request only as
      // messages are taken, so this is what bounds the prefetch.
      while (inFlight >= options.concurrency && !closing) {
        await new Promise<void>((resolve) => (slotFreed = resolve));
      }
      const next = await iterator.next();
      if (next.done) return;
      const msg = next.value;
      if (closing) {
        msg.nak(); // stopped while it was buffered: hand it back for immediate redelivery
        continue;
      }
      inFlight += 1;
      const work = handle(msg).finally(() => {
        inFlight -= 1;
        running.delete(work);
        slotFreed?.();
      });
      running.add(work);
    }
  };
  const done = loop();

  let closed: Promise<void> | undefined;
  return {
    get inFlight() {
      return inFlight;
    },
    done,
    close(): Promise<void> {
      closed ??= (async () => {
        closing = true;
        slotFreed?.();
        await messages.close();
        await done;
        await Promise.allSettled([...running]);
      })();
      return closed;
    },
  };
}
