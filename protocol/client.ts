/**
 * The typed client for submitting tasks and reading their outcome over NATS. The gateway is one
 * user; internal services use it directly. It is the only part of `protocol/` that does I/O, and
 * only through the connection it is given.
 *
 * Waiting for a result costs no extra JetStream write: the actor sends the stored final record to
 * the client's reply subject (core NATS, one wildcard subscription per client). Core delivery is
 * at most once, so every waiter also re-reads the task bucket on a slow timer; a lost reply delays
 * an answer, it never loses one.
 */
import {
  JetStreamApiCodes,
  JetStreamApiError,
  jetstream,
  type JetStreamClient,
  type JetStreamManager,
} from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import {
  context,
  propagation,
  SpanKind,
  SpanStatusCode,
  trace,
  type Span,
} from '@opentelemetry/api';
import {
  headers as natsHeaders,
  NoRespondersError,
  RequestError,
  TimeoutError,
  type MsgHdrs,
  type NatsConnection,
  type Subscription,
} from '@nats-io/transport-node';
import { encode } from './codec.js';
import { checkRequestSize, checkTaskFields, requestByteLimit } from './limits.js';
import { assetNames, HUB_DOMAIN } from './definitions.js';
import {
  decodeAs,
  ENVELOPE_VERSION,
  FINAL_STATES,
  newTaskId,
  plannedTaskId,
  requestEnvelopeSchema,
  taskIdForIdempotencyKey,
  taskRecordSchema,
  TaskState,
  type RequestEnvelope,
  type TaskRecord,
} from './envelopes.js';
import { ErrorCode, VigilError } from './errors.js';
import {
  openTaskEventFeed,
  type TaskEventFeed,
  type TaskEventFeedOptions,
} from './task-event-feed.js';
import { subjects, type Priority } from './subjects.js';
import { MESSAGING_SYSTEM_NATS, MessagingAttr, natsHeaderSetter } from './trace-context.js';

/** Spans of the client (the producer side of the queue); a no-op until a node starts the SDK. */
const tracer = trace.getTracer('vigil.client');

/** JetStream's error for a store that refused a message (here: the bounded queue is full). */
const STREAM_STORE_FAILED = 10077;
/** JetStream's error for a message larger than the stream's `max_msg_size`. */
const MESSAGE_TOO_LARGE = 10054;

/** Options of {@link createVigilClient}. */
export interface VigilClientOptions {
  /** The client's home region: where its tasks go unless a submission names another. */
  region: string;
  /**
   * The other regions this client may send work to and look tasks up in, nearest first. A task
   * spilled over to one of them is still found by `getTask` and still answered to the caller.
   */
  otherRegions?: readonly string[];
  /**
   * Set when the client runs at an edge site (a leaf node with its own JetStream domain): tasks
   * for the home region are accepted into the site's stream, which the hub sources, so the site
   * keeps accepting work while its link to the hub is cut.
   */
  edgeSite?: string;
  /** Names this client's reply subject; must be unique among live clients. Default random. */
  clientId?: string;
  /** Most tasks waited for at once; past it `submit` with a wait is refused. Default 10 000. */
  maxWaiters?: number;
  /**
   * How long a submission may wait for JetStream's publish acknowledgement over all its
   * attempts, ms. Default 10 000: longer than nats-server's longest leader election (9 s), so a
   * publish that was in flight when its stream lost its leader is acknowledged by the new leader
   * rather than answered 503. Only such publishes wait this long: while a stream has no leader,
   * a new publish is refused at once (nobody listens on its subject).
   */
  publishTimeoutMs?: number;
  /**
   * How long one publish attempt waits for its acknowledgement before the same message (same
   * `Nats-Msg-Id`, so JetStream keeps one copy) is sent again, ms. Default 1 000.
   */
  publishAttemptTimeoutMs?: number;
  /** First interval of the safety-net re-read of a waited-for task, ms; doubles to 8x. Default 1 000. */
  resultPollMs?: number;
  /** How long a lookup in another region may take before that region is skipped, ms. Default 1 000. */
  remoteLookupTimeoutMs?: number;
  /** How long a region that failed a lookup is skipped, ms. Default 5 000. */
  remoteLookupSkipMs?: number;
}

/** Defaults of {@link VigilClientOptions}. */
export const VIGIL_CLIENT_DEFAULTS = {
  maxWaiters: 10_000,
  publishTimeoutMs: 10_000,
  publishAttemptTimeoutMs: 1_000,
  resultPollMs: 1_000,
  remoteLookupTimeoutMs: 1_000,
  remoteLookupSkipMs: 5_000,
} as const;

/** A task to submit. */
export interface SubmitRequest {
  tenant: string;
  model: string;
  version?: string;
  priority: Priority;
  input: unknown;
  params: Record<string, unknown>;
  /** Absolute deadline, epoch ms. */
  deadline: number;
  /** The region to run in; default the client's home region. */
  region?: string;
  /** Client's idempotency key: the same key from the same tenant always names the same task. */
  idempotencyKey?: string;
  /**
   * The task's id, for a caller that needs it before the submission ends (a stream opens its
   * event feed meanwhile): `plannedTaskId(tenant, idempotencyKey)`. Default: that, made here.
   */
  taskId?: string;
  /** The caller reads the task's tokens as they come: the actor publishes them as events. */
  stream?: boolean;
  /** Extra headers for the request message; trace context is added from the active span. */
  headers?: Record<string, string>;
  /**
   * How long to wait for the outcome after acceptance, ms; 0 = return once accepted. The actor
   * sends the outcome straight to this client when it waits.
   */
  waitMs: number;
  /** Ends the wait early (the client went away); the task itself goes on. */
  cancel?: Cancellation;
}

/**
 * Tells a wait that nobody is waiting any more. Read at each safety-net poll, so the wait ends
 * within one poll interval; an `AbortSignal` is one.
 */
export interface Cancellation {
  readonly aborted: boolean;
}

/** What a submission came to. */
export interface Submission {
  taskId: string;
  /** The region that holds the task (for a duplicate: where the first submission went). */
  region: string;
  /** True when the task already existed (a retry with the same idempotency key). */
  duplicate: boolean;
  /** The final record, when the task ended before the submission's wait ran out. */
  outcome?: TaskRecord;
}

/** What a client knows of a task, and the region that holds it. */
export type TaskStatus = { region: string } & (
  | { state: typeof TaskState.Accepted; request: RequestEnvelope }
  | { state: Exclude<TaskState, typeof TaskState.Accepted>; record: TaskRecord }
);

/** Submits tasks and reads their outcomes. */
export interface VigilClient {
  /** This client's id (its reply subject token). */
  readonly clientId: string;
  /** Tasks being waited for right now. */
  readonly waiting: number;
  /**
   * Publishes a task and waits for JetStream to store it, then up to `waitMs` for its outcome.
   * Once the publish is acknowledged the task is accepted and will end. Throws a retryable
   * `VigilError` (`queue_full`, `unavailable`) when it could not be accepted.
   */
  submit(request: SubmitRequest): Promise<Submission>;
  /**
   * Waits up to `timeoutMs` for a task held in `region` (default home) to reach a final state;
   * `undefined` on timeout. With `tenant`, a reply whose record names another tenant is ignored.
   */
  waitForOutcome(
    taskId: string,
    timeoutMs: number,
    cancel?: Cancellation,
    region?: string,
    tenant?: string,
  ): Promise<TaskRecord | undefined>;
  /**
   * Reads a task's state in whichever region holds it: its record, or its queued request (at an
   * edge site, also one still held there); `undefined` when no region knows it.
   */
  getTask(taskId: string): Promise<TaskStatus | undefined>;
  /**
   * A task's events (lifecycle, progress, tokens) from its region's event stream: those stored
   * after `options.afterSeq`, then as they come. The caller checks that the task is its tenant's.
   */
  events(options: TaskEventFeedOptions): Promise<TaskEventFeed>;
  /** Stops listening for replies; pending waits resolve `undefined`. Idempotent. */
  close(): Promise<void>;
}

interface Waiter {
  /** The tenant whose task is awaited; a record of another tenant is not its answer. */
  tenant: string | undefined;
  resolve(record: TaskRecord | undefined): void;
}

interface RegisteredWaiter {
  /** Settles with the record from the reply subject, or `undefined` when the client closes. */
  readonly replied: Promise<TaskRecord | undefined>;
  cancel(): void;
}

class VigilClientImpl implements VigilClient {
  readonly clientId: string;
  /** Publishes requests: at an edge site, into the site's own domain. */
  readonly #js: JetStreamClient;
  /** Reads the hub regions' buckets and streams (the same client unless at an edge site). */
  readonly #hubJs: JetStreamClient;
  /**
   * Managers for direct gets, made once without the account-info check `jetstreamManager()`
   * does by default: that check is a round trip, and status reads are on the request path.
   */
  readonly #hubJsm: Promise<JetStreamManager>;
  readonly #localJsm: Promise<JetStreamManager>;
  readonly #region: string;
  readonly #otherRegions: readonly string[];
  readonly #edgeSite: string | undefined;
  readonly #options: Required<Omit<VigilClientOptions, 'clientId' | 'otherRegions' | 'edgeSite'>>;
  /** Other regions that failed a lookup recently, and until when they are skipped. */
  readonly #regionSkippedUntil = new Map<string, number>();
  /** Task buckets by region, opened on first use (a failed open is retried next time). */
  readonly #taskBuckets = new Map<string, Promise<KV>>();
  readonly #waiters = new Map<string, Set<Waiter>>();
  readonly #replies: Subscription;
  /** The connection, for the server's `max_payload` (known once connected, and per server). */
  readonly #nc: NatsConnection;
  #closed = false;

  constructor(nc: NatsConnection, options: VigilClientOptions, clientId: string) {
    this.#nc = nc;
    this.#js = jetstream(nc);
    this.#hubJs = options.edgeSite ? jetstream(nc, { domain: HUB_DOMAIN }) : this.#js;
    this.#localJsm = this.#js.jetstreamManager(false);
    this.#hubJsm = options.edgeSite ? this.#hubJs.jetstreamManager(false) : this.#localJsm;
    this.#region = options.region;
    this.#otherRegions = (options.otherRegions ?? []).filter((r) => r !== options.region);
    this.#edgeSite = options.edgeSite;
    const { otherRegions: _o, edgeSite: _e, clientId: _c, ...rest } = options;
    this.#options = { ...VIGIL_CLIENT_DEFAULTS, ...rest };
    this.clientId = clientId;
    this.#replies = nc.subscribe(subjects.repliesOfGateway(clientId), {
      callback: (err, msg) => {
        if (err) return;
        // The subject names the task (`vigil.reply.<client>.<task>`): a reply nobody waits for
        // costs no decode, and a record of another task on it is nobody's answer.
        const taskId = msg.subject.slice(msg.subject.lastIndexOf('.') + 1);
        if (!this.#waiters.has(taskId)) return;
        let record: TaskRecord;
        try {
          record = decodeAs(taskRecordSchema, msg.data, 'reply');
        } catch {
          return; // a malformed reply is ignored; the waiter's re-read still finds the outcome
        }
        if (record.id === taskId) this.#settle(taskId, record);
      },
    });
  }

  get waiting(): number {
    let n = 0;
    for (const set of this.#waiters.values()) n += set.size;
    return n;
  }

  /**
   * The steps of a submission: a keyed retry finds its task wherever it is; otherwise the
   * waiter is registered first, the envelope published with `Nats-Msg-Id` = task id, the PubAck
   * is acceptance, and then the outcome is waited for.
   */
  async submit(request: SubmitRequest): Promise<Submission> {
    // What an actor would refuse to decode is refused here, before anything is stored.
    checkTaskFields({ input: request.input, params: request.params });
    const region = request.region ?? this.#region;
    const taskId = request.taskId ?? plannedTaskId(request.tenant, request.idempotencyKey);
    // A planned id is checked against its key; one made here is the key's already (one hash per
    // keyed request on the hot path, not two).
    if (
      request.taskId !== undefined &&
      request.idempotencyKey !== undefined &&
      request.taskId !== taskIdForIdempotencyKey(request.tenant, request.idempotencyKey)
    ) {
      throw new VigilError(ErrorCode.Internal, "a keyed submission's id is its key's", false);
    }
    if (request.idempotencyKey !== undefined) {
      const existing = await this.#submittedBefore(taskId, request);
      if (existing) return existing;
    }
    const waits = request.waitMs > 0;
    const replyTo = waits ? subjects.reply(this.clientId, taskId) : undefined;
    const envelope = requestEnvelope(taskId, request, replyTo);
    // Listen before publishing: the reply can arrive in the same socket read as the PubAck.
    const waiter = waits ? this.#register(taskId, request.tenant) : undefined;
    try {
      const duplicate = await this.#publish(envelope, region, request.headers);
      if (!waiter) return { taskId, region, duplicate };
      // A duplicate's reply goes to whoever submitted first: read the bucket at once.
      const outcome = await this.#wait(
        taskId,
        region,
        waiter,
        request.waitMs,
        duplicate,
        request.cancel,
      );
      return outcome ? { taskId, region, duplicate, outcome } : { taskId, region, duplicate };
    } finally {
      waiter?.cancel();
    }
  }

  /**
   * A keyed submission's task when it exists already, waited for like a new one. A retry with
   * the same key may reach another gateway, or be routed to another region, or come after
   * JetStream's dedup window: wherever the task already is, that is the task.
   */
  async #submittedBefore(taskId: string, request: SubmitRequest): Promise<Submission | undefined> {
    const existing = await this.getTask(taskId);
    if (!existing) return undefined;
    if (existing.state !== TaskState.Accepted && FINAL_STATES.has(existing.state)) {
      return { taskId, region: existing.region, duplicate: true, outcome: existing.record };
    }
    const outcome =
      request.waitMs > 0
        ? await this.waitForOutcome(
            taskId,
            request.waitMs,
            request.cancel,
            existing.region,
            request.tenant,
          )
        : undefined;
    return outcome
      ? { taskId, region: existing.region, duplicate: true, outcome }
      : { taskId, region: existing.region, duplicate: true };
  }

  /**
   * Publishes the envelope to `region`'s request stream with `Nats-Msg-Id` = task id and waits
   * for the PubAck: once it comes, the task is accepted and will end. Resolves whether JetStream
   * had the task already (a duplicate); throws a coded error, saying whether to retry, when no
   * PubAck came.
   */
  async #publish(
    envelope: RequestEnvelope,
    region: string,
    headers?: Record<string, string>,
  ): Promise<boolean> {
    const subject = this.#requestSubject(envelope, region);
    const span = startProducerSpan(envelope, subject, region);
    const hdrs: MsgHdrs = natsHeaders();
    for (const [name, value] of Object.entries(headers ?? {})) hdrs.set(name, value);
    propagation.inject(trace.setSpan(context.active(), span), hdrs, natsHeaderSetter);
    try {
      // Refused before anything is sent: too large for the server or for an actor to decode.
      const payload = this.#encodeRequest(envelope);
      return await this.#publishUntilAcked(subject, payload, envelope.id, hdrs, span);
    } catch (err) {
      const error = publishError(err);
      span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
      throw error;
    } finally {
      span.end();
    }
  }

  /**
   * The envelope's bytes, refused when larger than a request may be: nats-server would refuse
   * them (`max_payload`) or an actor could not decode them.
   */
  #encodeRequest(envelope: RequestEnvelope): Uint8Array {
    const bytes = encode(envelope);
    checkRequestSize(bytes, requestByteLimit(this.#nc.info?.max_payload));
    return bytes;
  }

  /**
   * Sends the message until JetStream acknowledges it, within the publish budget. A PubAck that
   * is late (the attempt timed out: the stream's leader may have died with the message, or after
   * storing it) says nothing either way, so the same message goes again with the same
   * `Nats-Msg-Id`: if a copy was stored, JetStream answers the new attempt as a duplicate and
   * keeps one. From that first timeout on the publish is ambiguous, and no answer but a PubAck
   * ends it early: an attempt that finds no leader (the election is under way) or the first copy
   * still being stored waits a moment and goes again; at the end of the budget it fails as
   * unacknowledged, never as refused, so the request is never sent to another region. Resolves
   * whether JetStream had the task before this submission.
   */
  async #publishUntilAcked(
    subject: string,
    data: Uint8Array,
    msgID: string,
    headers: MsgHdrs,
    span: Span,
  ): Promise<boolean> {
    const until = Date.now() + this.#options.publishTimeoutMs;
    let ambiguous = false;
    for (let attempt = 1; ; attempt++) {
      const left = until - Date.now();
      const timeout = Math.max(1, Math.min(this.#options.publishAttemptTimeoutMs, left));
      try {
        const ack = await this.#js.publish(subject, data, { msgID, headers, timeout });
        // After an ambiguous attempt, "duplicate" most likely means that attempt was stored:
        // the task is this submission's own.
        return ack.duplicate && !ambiguous;
      } catch (err) {
        const retry = publishRetry(err, ambiguous);
        if (retry === undefined || until - Date.now() <= 0) {
          throw ambiguous ? unacknowledged(err) : err;
        }
        ambiguous ||= retry.ambiguous;
        span.addEvent('publish retried', { attempt, reason: retry.reason });
        if (retry.pauseMs > 0) await sleep(Math.min(retry.pauseMs, until - Date.now()));
      }
    }
  }

  /** Where a request goes: home-region work at an edge site is accepted by the site itself. */
  #requestSubject(envelope: RequestEnvelope, region: string): string {
    const { model, priority, id } = envelope;
    return this.#edgeSite !== undefined && region === this.#region
      ? subjects.edgeRequest(this.#edgeSite, region, model, priority, id)
      : subjects.request(region, model, priority, id);
  }

  async waitForOutcome(
    taskId: string,
    timeoutMs: number,
    cancel?: Cancellation,
    region: string = this.#region,
    tenant?: string,
  ): Promise<TaskRecord | undefined> {
    const waiter = this.#register(taskId, tenant);
    try {
      return await this.#wait(taskId, region, waiter, timeoutMs, true, cancel);
    } finally {
      waiter.cancel();
    }
  }

  #register(taskId: string, tenant: string | undefined): RegisteredWaiter {
    if (this.#closed) throw new VigilError(ErrorCode.Unavailable, 'the client is closed', true);
    if (this.waiting >= this.#options.maxWaiters) {
      throw new VigilError(
        ErrorCode.Unavailable,
        'too many requests are waiting for results',
        true,
        {
          retryAfterMs: 1000,
        },
      );
    }
    let waiter!: Waiter;
    const replied = new Promise<TaskRecord | undefined>((resolve) => {
      waiter = { tenant, resolve };
    });
    let set = this.#waiters.get(taskId);
    if (!set) this.#waiters.set(taskId, (set = new Set()));
    set.add(waiter);
    const waiters = this.#waiters;
    return {
      replied,
      cancel(): void {
        set.delete(waiter);
        if (set.size === 0 && waiters.get(taskId) === set) waiters.delete(taskId);
      },
    };
  }

  async #wait(
    taskId: string,
    region: string,
    waiter: RegisteredWaiter,
    timeoutMs: number,
    readFirst: boolean,
    cancel: Cancellation | undefined,
  ): Promise<TaskRecord | undefined> {
    const deadline = Date.now() + timeoutMs;
    let pollMs = this.#options.resultPollMs;
    let read = readFirst;
    // The reply may have gone to another client or been lost (core NATS is at most once): the
    // bucket is re-read on a doubling timer, so a lost reply delays the answer, never loses it.
    for (;;) {
      if (read) {
        const existing = await this.#readRecord(region, taskId).catch(() => undefined);
        if (existing && FINAL_STATES.has(existing.state)) return existing;
      }
      read = true;
      const left = deadline - Date.now();
      if (left <= 0 || cancel?.aborted || this.#closed) return undefined;
      const outcome = await raceTimeout(waiter.replied, Math.min(pollMs, left));
      if (outcome !== null) return outcome;
      pollMs = Math.min(pollMs * 2, this.#options.resultPollMs * 8);
    }
  }

  events(options: TaskEventFeedOptions): Promise<TaskEventFeed> {
    return openTaskEventFeed(this.#hubJs, options);
  }

  async getTask(taskId: string): Promise<TaskStatus | undefined> {
    // Most tasks live where they were sent: one read answers them.
    const home = await this.#statusIn(this.#region, taskId).then(
      (status) => ({ status }),
      (error: unknown) => ({ error }),
    );
    if ('status' in home && home.status) return home.status;
    const elsewhere = await Promise.all([
      ...this.#otherRegions.map((region) => this.#statusElsewhere(region, taskId)),
      this.#heldAtEdge(taskId),
    ]);
    const found = elsewhere.find((status) => status !== undefined);
    if (found) return found;
    // "Unknown" only when home said so; an unreachable home is an error, not a missing task.
    if ('error' in home) throw readError(home.error);
    return undefined;
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#replies.unsubscribe();
      for (const [taskId] of this.#waiters) this.#settle(taskId, undefined);
    }
    return Promise.resolve();
  }

  /** The task's record in `region`, else its request still queued there. */
  async #statusIn(region: string, taskId: string): Promise<TaskStatus | undefined> {
    const record = await this.#readRecord(region, taskId);
    if (record) return { region, state: record.state, record };
    const jsm = await this.#hubJsm;
    const queued = await jsm.direct.getMessage(assetNames.requestStream(region), {
      next_by_subj: subjects.requestById(region, taskId),
    });
    if (!queued) {
      // It may have ended between the two reads: an actor stores the final record before its
      // request leaves the queue, so a second read finds it. Without it, a task that ended just
      // then was answered 404 (seen in CI: a cancelled stream's task, ended 21 ms after).
      const ended = await this.#readRecord(region, taskId);
      return ended ? { region, state: ended.state, record: ended } : undefined;
    }
    const request = decodeAs(requestEnvelopeSchema, queued.data, 'request');
    return { region, state: TaskState.Accepted, request };
  }

  /**
   * The task's status in another region, asked with a short timeout. A region that does not
   * answer in time is skipped for a while: an unreachable region cannot hold the answer we can
   * give, and waiting out its full timeout on every lookup would stall the healthy regions too.
   */
  async #statusElsewhere(region: string, taskId: string): Promise<TaskStatus | undefined> {
    if ((this.#regionSkippedUntil.get(region) ?? 0) > Date.now()) return undefined;
    // A failed read counts as no answer, like a slow one.
    const status = await raceTimeout(
      this.#statusIn(region, taskId),
      this.#options.remoteLookupTimeoutMs,
    );
    if (status !== null) return status;
    this.#regionSkippedUntil.set(region, Date.now() + this.#options.remoteLookupSkipMs);
    return undefined;
  }

  /** A request accepted by this edge site that the hub has not sourced (or not run) yet. */
  async #heldAtEdge(taskId: string): Promise<TaskStatus | undefined> {
    if (this.#edgeSite === undefined) return undefined;
    const jsm = await this.#localJsm;
    const held = await jsm.direct.getMessage(assetNames.edgeStream(this.#edgeSite), {
      next_by_subj: subjects.edgeRequestById(this.#edgeSite, this.#region, taskId),
    });
    if (!held) return undefined;
    const request = decodeAs(requestEnvelopeSchema, held.data, 'request');
    return { region: this.#region, state: TaskState.Accepted, request };
  }

  async #readRecord(region: string, taskId: string): Promise<TaskRecord | undefined> {
    const entry = await (await this.#taskBucket(region)).get(taskId);
    if (!entry || entry.operation !== 'PUT') return undefined;
    return decodeAs(taskRecordSchema, entry.value, 'task record');
  }

  #taskBucket(region: string): Promise<KV> {
    let bucket = this.#taskBuckets.get(region);
    if (!bucket) {
      bucket = new Kvm(this.#hubJs).open(assetNames.taskBucket(region));
      this.#taskBuckets.set(region, bucket);
      bucket.catch(() => this.#taskBuckets.delete(region));
    }
    return bucket;
  }

  #settle(taskId: string, record: TaskRecord | undefined): void {
    const set = this.#waiters.get(taskId);
    if (!set) return;
    if (record && !FINAL_STATES.has(record.state)) return;
    for (const waiter of set) {
      // A record of another tenant on this task's subject is forged or misrouted: the waiter
      // keeps waiting, and the stored record still reaches it (reply or re-read).
      if (record && waiter.tenant !== undefined && record.tenant !== waiter.tenant) continue;
      waiter.resolve(record);
    }
  }
}

/** The request envelope of a submission; `replyTo` when its submitter waits for the outcome. */
function requestEnvelope(
  taskId: string,
  request: SubmitRequest,
  replyTo: string | undefined,
): RequestEnvelope {
  const envelope: RequestEnvelope = {
    v: ENVELOPE_VERSION,
    id: taskId,
    tenant: request.tenant,
    model: request.model,
    priority: request.priority,
    input: request.input,
    params: request.params,
    createdAt: Date.now(),
    deadline: request.deadline,
  };
  if (request.version !== undefined) envelope.version = request.version;
  if (request.stream === true) envelope.stream = true;
  if (replyTo !== undefined) envelope.replyTo = replyTo;
  return envelope;
}

/**
 * The producer span of a publish. Its context travels in the message headers and the actor's
 * spans are its children; a spill-over to another region is the same publish, so it stays in
 * the trace.
 */
function startProducerSpan(envelope: RequestEnvelope, subject: string, region: string): Span {
  return tracer.startSpan(`send ${envelope.model}`, {
    kind: SpanKind.PRODUCER,
    attributes: {
      [MessagingAttr.System]: MESSAGING_SYSTEM_NATS,
      [MessagingAttr.OperationType]: 'send',
      [MessagingAttr.OperationName]: 'publish',
      [MessagingAttr.DestinationName]: subject,
      [MessagingAttr.MessageId]: envelope.id,
      [MessagingAttr.Model]: envelope.model,
      [MessagingAttr.Region]: region,
    },
  });
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Resolves with the promise's value, or `null` after `ms`. */
function raceTimeout<T>(promise: Promise<T>, ms: number): Promise<T | null> {
  return new Promise<T | null>((resolve) => {
    const timer = setTimeout(() => resolve(null), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      () => {
        clearTimeout(timer);
        resolve(null);
      },
    );
  });
}

/**
 * A publish the queue refused outright (full, missing, nobody listening): nothing was stored, so
 * the request may go to another region without risk of running twice. A timeout is not this: the
 * request may have been stored.
 */
export class PublishRefusedError extends VigilError {
  override name = 'PublishRefusedError';
}

/** A failed read of task state: the region did not answer in time, or at all; retry later. */
function readError(err: unknown): VigilError {
  if (err instanceof VigilError) return err;
  return new VigilError(
    ErrorCode.Unavailable,
    `the task's region did not answer: ${(err as Error).message}`,
    true,
    { cause: err, retryAfterMs: 1000 },
  );
}

/** JetStream's error for a message id whose first copy is being stored right now. */
const DUPLICATE_IN_PROCESS = 10158;
/** JetStream's errors for a stream that has no leader to take the message right now. */
const NO_LEADER_NOW: ReadonlySet<number> = new Set([
  10008, // JetStream system temporarily unavailable
  10009, // the server that got it is not (or no longer) the leader
]);
/** Pause before an attempt that found no leader, or the first copy in process, goes again, ms. */
const PUBLISH_RETRY_PAUSE_MS = 100;

/**
 * Did nobody listen on the subject? For a JetStream publish that means no stream (or no leader
 * of it) took the message: nothing was stored. nats.js reports it as "jetstream is not enabled",
 * with the no-responders error as its cause.
 */
function noResponders(err: unknown): boolean {
  let e: unknown = err;
  for (let depth = 0; depth < 4 && e instanceof Error; depth++, e = e.cause) {
    if (e instanceof NoRespondersError) return true;
    if (e instanceof RequestError && e.isNoResponders()) return true;
  }
  return false;
}

/** Did the stream answer that it has no leader right now (nothing was stored)? */
function noLeaderNow(err: unknown): boolean {
  return noResponders(err) || (err instanceof JetStreamApiError && NO_LEADER_NOW.has(err.code));
}

/**
 * Whether a failed publish attempt is worth another one with the same message id, and when; or
 * `undefined` when its answer is final. A timeout is retried at once and makes the publish
 * ambiguous. "No leader" is final for a first attempt (nothing was stored: the request may go to
 * another region) and retried after a pause for an ambiguous one (the first copy may be stored,
 * and the new leader will say so). A copy being stored right now is waited for.
 */
function publishRetry(
  err: unknown,
  ambiguous: boolean,
): { reason: string; pauseMs: number; ambiguous: boolean } | undefined {
  if (err instanceof TimeoutError)
    return { reason: 'no PubAck in time', pauseMs: 0, ambiguous: true };
  if (err instanceof JetStreamApiError && err.code === DUPLICATE_IN_PROCESS)
    return { reason: 'first copy in process', pauseMs: PUBLISH_RETRY_PAUSE_MS, ambiguous };
  if (ambiguous && noLeaderNow(err))
    return { reason: 'no stream leader', pauseMs: PUBLISH_RETRY_PAUSE_MS, ambiguous };
  return undefined;
}

/** A publish that ended without a PubAck after an ambiguous attempt: it may have been stored. */
function unacknowledged(err: unknown): VigilError {
  return new VigilError(ErrorCode.Unavailable, 'JetStream did not acknowledge the request', true, {
    cause: err,
    retryAfterMs: 1000,
  });
}

/** Maps a failed publish onto a coded error that says whether and when to retry. */
function publishError(err: unknown): VigilError {
  if (err instanceof VigilError) return err;
  if (noLeaderNow(err)) {
    return new PublishRefusedError(
      ErrorCode.Unavailable,
      'the request queue has no leader right now',
      true,
      { cause: err, retryAfterMs: 1000 },
    );
  }
  if (err instanceof JetStreamApiError) {
    if (err.code === STREAM_STORE_FAILED) {
      return new PublishRefusedError(
        ErrorCode.QueueFull,
        `the request queue is full: ${err.message}`,
        true,
        {
          cause: err,
          retryAfterMs: 2000,
        },
      );
    }
    if (err.code === MESSAGE_TOO_LARGE) {
      return new VigilError(
        ErrorCode.PayloadTooLarge,
        'the request is larger than the queue accepts',
        false,
        {
          cause: err,
        },
      );
    }
    if (err.code === JetStreamApiCodes.StreamNotFound) {
      return new PublishRefusedError(
        ErrorCode.Unavailable,
        'the request queue does not exist yet',
        true,
        {
          cause: err,
          retryAfterMs: 5000,
        },
      );
    }
  }
  if (err instanceof TimeoutError) {
    return new VigilError(
      ErrorCode.Unavailable,
      'JetStream did not acknowledge the request',
      true,
      {
        cause: err,
        retryAfterMs: 1000,
      },
    );
  }
  return new VigilError(
    ErrorCode.Unavailable,
    `could not queue the request: ${(err as Error).message}`,
    true,
    {
      cause: err,
      retryAfterMs: 1000,
    },
  );
}

/** Opens a client on `nc` for `options.region`; the region's assets must exist. */
export async function createVigilClient(
  nc: NatsConnection,
  options: VigilClientOptions,
): Promise<VigilClient> {
  const client = new VigilClientImpl(nc, options, options.clientId ?? newTaskId());
  // A hub client fails fast on an unprovisioned region. An edge site must start, and accept
  // work, while its link to the hub is cut, so it checks nothing it cannot reach.
  if (options.edgeSite === undefined) {
    try {
      await new Kvm(jetstream(nc)).open(assetNames.taskBucket(options.region));
    } catch (err) {
      await client.close();
      throw err;
    }
  }
  return client;
}
