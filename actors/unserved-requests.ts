/**
 * Requests no actor will ever take. The request stream stores every subject under
 * `vigil.req.<region>.>`, but only a model some actor host served here has a consumer (the actor
 * creates it). Gateways refuse models outside the catalog, yet a NATS user allowed to publish
 * requests can still queue one for a model nobody serves: it would stay `accepted` for ever and
 * count against the queue's bound. This sweep ends such a request once it has waited a grace
 * period for a consumer: a final `failed` record (`not_found`) for its owner, the waiting
 * caller's reply, the tenant's event, a dead letter with its bytes, and its removal from the
 * stream.
 *
 * Cheap when there is nothing to do, which is always but for hostile or broken publishers: each
 * consumer counts what it holds (pending plus unacknowledged), and only when the stream holds
 * more than all of them together are its subjects listed. A race between those two reads can
 * hide a request from one sweep; the next finds it.
 *
 * Every actor host sweeps its own region; several at once are harmless. The record is written
 * only where the task has none (so it never overwrites an outcome, and of two sweepers one tells
 * the caller), the letter is deduplicated on the request message, and a request whose model got
 * a consumer before it was ended is left to that consumer's actor.
 */
import { jetstream, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import {
  assetNames,
  ENVELOPE_VERSION,
  ErrorCode,
  FINAL_STATES,
  isNameToken,
  recoverRequest,
  subjects,
  TaskState,
  type RecoveredRequest,
  type TaskRecord,
  type WireError,
} from '../protocol/index.js';
import { startReplySpan } from './actor-spans.js';
import { letterRawRequest, type RawRequest } from './dead-letters.js';
import { createReplies, type Replies } from './replies.js';
import { createRecordOnly, type TaskIdentity } from './task-records.js';

/** Options of {@link startUnservedRequestSweep}. */
export interface UnservedRequestsOptions {
  /** The region whose request stream is swept. */
  region: string;
  /** How long a request for a model with no consumer may wait for one, ms. Default 60 s. */
  graceMs?: number;
  /** How often the stream is looked at, ms. Default 10 s. */
  checkIntervalMs?: number;
  /** Written into the records it stores, as an actor's id is. */
  actorId: string;
  logger: Logger;
}

/** Defaults of {@link UnservedRequestsOptions}. */
export const UNSERVED_REQUESTS_DEFAULTS = {
  /** Longer than an actor host takes to start and create its consumers. */
  graceMs: 60_000,
  checkIntervalMs: 10_000,
} as const;

/** Requests ended per sweep at most; the rest wait for the next one. */
const MAX_ENDED_PER_SWEEP = 256;
/** Uncovered requests read per sweep at most (one direct get each), young ones included. */
const MAX_READ_PER_SWEEP = 1024;

/** The version in the record of a task no model ran. */
const NO_VERSION = 'none';

/** A running sweep. */
export interface UnservedRequestSweep {
  /** Looks at the stream once now; resolves how many requests it ended. */
  sweep(): Promise<number>;
  /** Stops sweeping, after the sweep under way. Idempotent. */
  stop(): Promise<void>;
}

/** Starts sweeping `options.region`'s request stream through `nc`. */
export async function startUnservedRequestSweep(
  nc: NatsConnection,
  options: UnservedRequestsOptions,
): Promise<UnservedRequestSweep> {
  const js = jetstream(nc);
  const tasks = await new Kvm(js).open(assetNames.taskBucket(options.region));
  const replies = createReplies(nc, options.region, { startReply: startReplySpan }, options.logger);
  const sweeper = new Sweeper(js, await js.jetstreamManager(false), tasks, replies, options);
  sweeper.start();
  return sweeper;
}

/** A request as the stream holds it, with when it was stored. */
type QueuedRequest = RawRequest & { time: Date };

/** What the request stream's consumers take: their subject filters and how much they hold. */
interface Consumers {
  filters: string[];
  held: number;
}

class Sweeper implements UnservedRequestSweep {
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;
  readonly #tasks: KV;
  readonly #replies: Replies;
  readonly #o: Required<UnservedRequestsOptions>;
  readonly #stream: string;
  #timer: NodeJS.Timeout | undefined;
  #sweeping: Promise<unknown> = Promise.resolve();
  #stopped = false;

  constructor(
    js: JetStreamClient,
    jsm: JetStreamManager,
    tasks: KV,
    replies: Replies,
    options: UnservedRequestsOptions,
  ) {
    this.#js = js;
    this.#jsm = jsm;
    this.#tasks = tasks;
    this.#replies = replies;
    this.#o = { ...UNSERVED_REQUESTS_DEFAULTS, ...options };
    this.#stream = assetNames.requestStream(options.region);
  }

  start(): void {
    const loop = (): void => {
      this.#sweeping = this.sweep()
        .catch((err: unknown) => this.#o.logger.warn({ err }, 'unserved-request sweep failed'))
        .finally(() => {
          if (!this.#stopped) this.#timer = setTimeout(loop, this.#o.checkIntervalMs);
        });
    };
    this.#timer = setTimeout(loop, this.#o.checkIntervalMs);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#sweeping;
  }

  async sweep(): Promise<number> {
    const { filters, held } = await this.#consumers();
    const { state } = await this.#jsm.streams.info(this.#stream);
    if (state.messages <= held) return 0;
    const due = await this.#dueRequests(filters);
    if (due.length === 0) return 0;
    // A consumer may have been created since the listing: its actor takes the request.
    const now = await this.#consumers();
    let ended = 0;
    for (const request of due) {
      if (this.#stopped) break;
      if (now.filters.some((filter) => subjectMatches(filter, request.subject))) continue;
      if (await this.#end(request)) ended += 1;
    }
    return ended;
  }

  async #consumers(): Promise<Consumers> {
    const found: Consumers = { filters: [], held: 0 };
    for await (const consumer of this.#jsm.consumers.list(this.#stream)) {
      found.held += consumer.num_pending + consumer.num_ack_pending;
      const { filter_subject: one, filter_subjects: many } = consumer.config;
      // A consumer without a filter takes the whole stream.
      found.filters.push(...(many?.length ? many : [one || '>']));
    }
    return found;
  }

  /** Queued requests no consumer covers that have waited past the grace. */
  async #dueRequests(filters: readonly string[]): Promise<QueuedRequest[]> {
    const listed = await this.#jsm.streams.info(this.#stream, {
      subjects_filter: subjects.requestsOfRegion(this.#o.region),
    });
    const uncovered = Object.keys(listed.state.subjects ?? {}).filter(
      (subject) => !filters.some((filter) => subjectMatches(filter, subject)),
    );
    const due: QueuedRequest[] = [];
    for (const subject of uncovered.slice(0, MAX_READ_PER_SWEEP)) {
      if (due.length >= MAX_ENDED_PER_SWEEP || this.#stopped) break;
      const msg = await this.#jsm.direct.getMessage(this.#stream, { next_by_subj: subject });
      if (msg && Date.now() - msg.time.getTime() >= this.#o.graceMs) due.push(msg);
    }
    return due;
  }

  /**
   * Ends one request: its record where its owner can be told (never over a record the task has;
   * a task another writer is still running keeps its message), its letter, then its removal.
   */
  async #end(request: QueuedRequest): Promise<boolean> {
    const model = request.subject.split('.')[3] ?? '';
    const error: WireError = {
      code: ErrorCode.NotFound,
      message: `no actor serves model ${model.slice(0, 64)} in region ${this.#o.region}`,
      retryable: false,
    };
    const recovered = recoverRequest(request.subject, request.data);
    if (recovered?.tenant && isNameToken(model)) {
      const settled = await this.#endTask(request, model, recovered, recovered.tenant, error);
      if (!settled) return false;
    }
    await letterRawRequest(this.#js, this.#o.region, model, request, error, recovered);
    await this.#remove(request.seq);
    this.#o.logger.warn(
      { subject: request.subject, task_id: recovered?.taskId, tenant: recovered?.tenant },
      'request for a model no actor serves ended',
    );
    return true;
  }

  /** Writes the task's failed record, and tells; false when the task is someone else's to end. */
  async #endTask(
    request: QueuedRequest,
    model: string,
    recovered: RecoveredRequest,
    tenant: string,
    error: WireError,
  ): Promise<boolean> {
    const task: TaskIdentity = {
      id: recovered.taskId,
      tenant,
      model,
      // The stream's own timestamp of the request when the envelope did not say.
      createdAt: recovered.createdAt ?? request.time.getTime(),
      ...(recovered.replyTo ? { replyTo: recovered.replyTo } : {}),
    };
    const record: TaskRecord = {
      v: ENVELOPE_VERSION,
      id: task.id,
      tenant,
      model,
      // No version of the model ran: none was ever deployed here.
      version: NO_VERSION,
      state: TaskState.Failed,
      attempt: 1,
      createdAt: task.createdAt,
      finishedAt: Date.now(),
      error,
      actor: this.#o.actorId,
    };
    const stored = await createRecordOnly(this.#tasks, record);
    if (!stored.created) return FINAL_STATES.has(stored.record.state);
    this.#replies.reply(task, stored);
    this.#replies.emit(task, TaskState.Failed, record.attempt, { error });
    return true;
  }

  async #remove(seq: number): Promise<void> {
    try {
      await this.#jsm.streams.deleteMessage(this.#stream, seq, false);
    } catch (err) {
      // Another sweeper removed it first: gone is what was wanted.
      const gone = await this.#jsm.direct.getMessage(this.#stream, { seq }).catch(() => null);
      if (gone) throw err;
    }
  }
}

/** Whether NATS subject filter `filter` (`*` one token, `>` the rest) matches `subject`. */
function subjectMatches(filter: string, subject: string): boolean {
  const want = filter.split('.');
  const have = subject.split('.');
  for (let i = 0; i < want.length; i += 1) {
    if (want[i] === '>') return have.length > i;
    if (i >= have.length || (want[i] !== '*' && want[i] !== have[i])) return false;
  }
  return want.length === have.length;
}
