/**
 * A streamed task's tokens on its way to readers: each token a model produces goes into the
 * task's event subject as a `token` event, which the region's event stream keeps (so a reader
 * that lost its connection resumes from any gateway, and a finished stream can be read again).
 *
 * One publish per attempt is in flight at a time, acknowledged by JetStream; tokens produced
 * meanwhile wait and ride together in the next event. A lone stream publishes its first token at
 * once (time to first token is one publish), and a busy host sends fewer, larger events instead
 * of queueing one per token. Readers are consumers of the stream: a slow one never slows the
 * model.
 */
import type { JetStreamClient } from '@nats-io/jetstream';
import type { Logger } from 'pino';
import {
  encode,
  ENVELOPE_VERSION,
  eventTtl,
  MAX_EVENT_TEXT_CHARS,
  subjects,
  TaskEventType,
  type RequestEnvelope,
  type TaskEvent,
} from '../protocol/index.js';

/** How long one event publish waits for its acknowledgement before it is sent again, ms. */
const PUBLISH_TIMEOUT_MS = 2_000;
/** Pause before a failed publish is sent again, ms. */
const RETRY_PAUSE_MS = 250;
/**
 * How long a finished attempt waits for its last tokens to be stored before its outcome is, ms.
 * Past it the outcome goes first: the record is the truth, and readers finish from it.
 */
const FINISH_WAIT_MS = 5_000;

/** The tokens of one attempt, as the model produces them. */
export interface TokenSink {
  /** Takes the next token of answer `choice` (0: the first); never blocks and never throws. */
  push(token: string, choice: number): void;
  /**
   * Settles once every token pushed is stored, or after a bounded wait: the attempt's outcome is
   * written after its tokens, so a reader sees the text before the end.
   */
  finish(): Promise<void>;
  /** Stops publishing (the attempt was superseded or handed back); what is pending is dropped. */
  discard(): void;
}

/** Opens token sinks for an actor's attempts. */
export interface TokenEvents {
  /** A sink for attempt `attempt` of `task`. */
  open(task: RequestEnvelope, attempt: number): TokenSink;
}

/** Options of {@link createTokenEvents}. */
export interface TokenEventsOptions {
  region: string;
  /** The region's event retention, ms (`eventRetentionOf`): events outlive the deadline by it. */
  retentionMs: number;
  log: Logger;
}

/** Token sinks publishing through `js`. */
export function createTokenEvents(js: JetStreamClient, options: TokenEventsOptions): TokenEvents {
  return {
    open: (task, attempt) => new AttemptTokens(js, options, task, attempt),
  };
}

class AttemptTokens implements TokenSink {
  readonly #pending: { token: string; choice: number }[] = [];
  /** Tokens taken into events so far: the next event's `index`. */
  #published = 0;
  #sending: Promise<void> | undefined;
  #stopped = false;

  constructor(
    private readonly js: JetStreamClient,
    private readonly o: TokenEventsOptions,
    private readonly task: RequestEnvelope,
    private readonly attempt: number,
  ) {}

  push(token: string, choice: number): void {
    if (this.#stopped) return;
    this.#pending.push({ token, choice });
    this.#sending ??= this.#send();
  }

  async finish(): Promise<void> {
    const sending = this.#sending;
    if (!sending) return;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, FINISH_WAIT_MS)));
    await Promise.race([sending, late]);
    clearTimeout(timer);
    if (this.#sending) {
      this.o.log.warn(
        { task_id: this.task.id, attempt: this.attempt, unsent: this.#pending.length },
        'tokens not stored in time; the outcome goes first',
      );
      this.discard();
    }
  }

  discard(): void {
    this.#stopped = true;
    this.#pending.length = 0;
  }

  /** Sends what is pending, one event at a time, until nothing is. */
  async #send(): Promise<void> {
    try {
      while (this.#pending.length > 0 && !this.#stopped) {
        const { text, tokens, choice } = this.#take();
        const event: TaskEvent = {
          v: ENVELOPE_VERSION,
          type: TaskEventType.Token,
          taskId: this.task.id,
          tenant: this.task.tenant,
          model: this.task.model,
          attempt: this.attempt,
          at: Date.now(),
          text,
          index: this.#published,
          tokens,
          ...(choice > 0 ? { choice } : {}),
        };
        this.#published += tokens;
        await this.#publish(event);
      }
    } finally {
      this.#sending = undefined;
    }
  }

  /**
   * The pending tokens of one answer that fit one event (at least one; a longer token is cut to
   * fit).
   */
  #take(): { text: string; tokens: number; choice: number } {
    const choice = this.#pending[0]!.choice;
    let text = '';
    let tokens = 0;
    while (tokens < this.#pending.length) {
      const next = this.#pending[tokens]!;
      if (next.choice !== choice) break;
      if (tokens > 0 && text.length + next.token.length > MAX_EVENT_TEXT_CHARS) break;
      text += next.token;
      tokens += 1;
    }
    this.#pending.splice(0, tokens);
    return { text: text.slice(0, MAX_EVENT_TEXT_CHARS), tokens, choice };
  }

  /**
   * Publishes until acknowledged, the same message id each time (the stream keeps one copy), for
   * as long as the attempt goes on.
   */
  async #publish(event: TaskEvent): Promise<void> {
    const subject = subjects.event(this.o.region, this.task.tenant, this.task.id);
    const data = encode(event);
    const msgID = `${this.task.id}.${this.attempt}.${event.index}`;
    for (;;) {
      try {
        const ttl = eventTtl(this.task.deadline, this.o.retentionMs);
        await this.js.publish(subject, data, { msgID, ttl, timeout: PUBLISH_TIMEOUT_MS });
        return;
      } catch (err) {
        if (this.#stopped) return;
        this.o.log.debug({ task_id: this.task.id, err }, 'token event not stored; sending again');
        await new Promise((resolve) => setTimeout(resolve, RETRY_PAUSE_MS));
      }
    }
  }
}
