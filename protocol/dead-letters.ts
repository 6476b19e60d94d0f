/**
 * The operator's view of a region's dead letters: list, inspect and replay them. Used by the
 * gateway's admin routes and the `vigil` CLI; like the task client it does I/O only through the
 * connection it is given.
 *
 * A dead letter is either a {@link DeadLetter} record (msgpack, written by the actor when a task
 * failed terminally or ran out of retries) or, for a request no actor could decode, the raw request
 * bytes with a `Vigil-Error` header. The second kind has no task to run again, so it can be listed
 * and inspected but not replayed.
 */
import {
  jetstream,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  type StoredMsg,
} from '@nats-io/jetstream';
import { Kvm, type KV, type KvEntry } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { encode } from './codec.js';
import { assetNames } from './definitions.js';
import {
  deadLetterSchema,
  decodeAs,
  taskRecordSchema,
  TaskState,
  type DeadLetter,
  type RequestEnvelope,
  type TaskRecord,
} from './envelopes.js';
import { ErrorCode, TerminalError, ValidationError, VigilError } from './errors.js';
import { isRevisionConflict } from './kv-conflicts.js';
import { nameToken, subjects } from './subjects.js';

/** Letters listed when the caller does not say how many. */
export const DEFAULT_DEAD_LETTER_LIST_LIMIT = 50;
/** Most letters one `list` call returns. */
export const MAX_DEAD_LETTER_LIST_LIMIT = 1000;

/** Headers on a request dead-lettered as raw bytes: undecodable, invalid, or for no served model. */
export const DEAD_LETTER_HEADERS = {
  /** `<code>: <reason>`. */
  error: 'Vigil-Error',
  /** The task id, from the request's subject, when it held one. */
  taskId: 'Vigil-Task-Id',
  /** The tenant, when it could be read from the envelope's top level. */
  tenant: 'Vigil-Tenant',
} as const;

const ERROR_HEADER = DEAD_LETTER_HEADERS.error;
/** JetStream's error for a store that refused a message (the bounded queue is full). */
const STREAM_STORE_FAILED = 10077;
const KNOWN_CODES: ReadonlySet<string> = new Set(Object.values(ErrorCode));

/** Options of {@link createDeadLetterAdmin}. */
export interface DeadLetterAdminOptions {
  /** Region whose dead-letter stream, request stream and task bucket are used. */
  region: string;
  /** How long to wait for JetStream to acknowledge a replayed request, ms. Default 5 000. */
  publishTimeoutMs?: number;
}

/** Which letters {@link DeadLetterAdmin.list} returns. */
export interface DeadLetterQuery {
  /** Only this model's letters. Default: every model. */
  model?: string;
  /** Most letters to return, 1 to {@link MAX_DEAD_LETTER_LIST_LIMIT}. Default 50. */
  limit?: number;
  /** First stream sequence to look at (inclusive). Default 1; page on with `last.seq + 1`. */
  fromSeq?: number;
}

/** One dead letter, as listed. */
export interface DeadLetterSummary {
  /** Sequence in the dead-letter stream: the letter's id for `get` and `replay`. */
  seq: number;
  /** When the letter was stored, ISO 8601. */
  time: string;
  model: string;
  /** Absent for undecodable letters. */
  taskId?: string;
  tenant?: string;
  /** `dead` when retries ran out, `failed` for a terminal error or a passed deadline. */
  state?: typeof TaskState.Failed | typeof TaskState.Dead;
  attempts?: number;
  error: { code: ErrorCode; message: string };
  /** The letter holds a request no actor could decode (raw bytes): it cannot be replayed. */
  undecodable: boolean;
}

/** One dead letter with everything stored about it. */
export interface DeadLetterDetail extends DeadLetterSummary {
  subject: string;
  /** The whole record: the task envelope (input, params, deadline...), error, attempts, actor. */
  letter?: DeadLetter;
  /** An undecodable letter's stored bytes, base64. */
  raw?: string;
}

/** What a replay did. */
export interface DeadLetterReplay {
  /** The task that runs again: the same id as the dead task. */
  taskId: string;
}

/** Lists, inspects and replays one region's dead letters. */
export interface DeadLetterAdmin {
  /** Letters in stream order, oldest first, from `fromSeq` on. */
  list(query?: DeadLetterQuery): Promise<DeadLetterSummary[]>;
  /** One letter, or `undefined` when there is none at `seq` (replayed, expired, never was). */
  get(seq: number): Promise<DeadLetterDetail | undefined>;
  /**
   * Runs the letter's task again under the same task id and removes the letter.
   *
   * In order: the task's final record is deleted (compare-and-set at the revision read, so that
   * the new run can store its outcome); the original envelope is published to the request stream
   * with a fresh deadline (the same budget, from now), no reply subject, and the message id
   * `<task>:replay:<seq>`; then the letter is deleted.
   *
   * Concurrent replays of the same letter run the task once and all return its id: the message id
   * is the same for every replay of one letter, so JetStream keeps one request; the record is only
   * deleted when it is still the one this letter's run stored (same `createdAt`, `failed` or
   * `dead`), so a late replay never erases the outcome of the run an earlier replay started; and a
   * replay that finds the task already re-run (a record from a later run, or a success) only
   * removes the stale letter.
   *
   * @throws VigilError `not_found` when there is no letter at `seq`; `invalid_request` for an
   *   undecodable letter; `queue_full` or `unavailable` (retryable) when the request could not be
   *   queued, in which case the task's record is restored and the letter kept.
   */
  replay(seq: number): Promise<DeadLetterReplay>;
}

type ParsedLetter =
  | { type: 'letter'; letter: DeadLetter }
  | { type: 'undecodable'; error: { code: ErrorCode; message: string } };

class DeadLetterAdminImpl implements DeadLetterAdmin {
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;
  readonly #tasks: KV;
  readonly #region: string;
  readonly #stream: string;
  readonly #publishTimeoutMs: number;

  constructor(
    js: JetStreamClient,
    jsm: JetStreamManager,
    tasks: KV,
    options: DeadLetterAdminOptions,
  ) {
    this.#js = js;
    this.#jsm = jsm;
    this.#tasks = tasks;
    this.#region = options.region;
    this.#stream = assetNames.deadLetterStream(options.region);
    this.#publishTimeoutMs = options.publishTimeoutMs ?? 5_000;
  }

  async list(query: DeadLetterQuery = {}): Promise<DeadLetterSummary[]> {
    const limit = query.limit ?? DEFAULT_DEAD_LETTER_LIST_LIMIT;
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_DEAD_LETTER_LIST_LIMIT) {
      throw new ValidationError(
        `must be an integer from 1 to ${MAX_DEAD_LETTER_LIST_LIMIT}`,
        'limit',
      );
    }
    const fromSeq = query.fromSeq ?? 1;
    checkSeq(fromSeq, 'fromSeq');
    const filter =
      query.model === undefined
        ? subjects.deadLettersOfRegion(this.#region)
        : subjects.deadLetter(this.#region, nameToken(query.model, 'model'));
    const letters: DeadLetterSummary[] = [];
    // One direct get per letter: no consumer to create and clean up, and it stops at the end of
    // the stream instead of waiting for a fetch to expire. Fine for an operator's page of 50.
    let seq = fromSeq;
    while (letters.length < limit) {
      const msg = await this.#jsm.direct.getMessage(this.#stream, { seq, next_by_subj: filter });
      if (!msg) break;
      letters.push(this.#summary(msg, parseLetter(msg)));
      seq = msg.seq + 1;
    }
    return letters;
  }

  async get(seq: number): Promise<DeadLetterDetail | undefined> {
    checkSeq(seq, 'seq');
    const msg = await this.#read(seq);
    if (!msg) return undefined;
    const parsed = parseLetter(msg);
    const detail: DeadLetterDetail = { ...this.#summary(msg, parsed), subject: msg.subject };
    if (parsed.type === 'letter') detail.letter = parsed.letter;
    else detail.raw = Buffer.from(msg.data).toString('base64');
    return detail;
  }

  async replay(seq: number): Promise<DeadLetterReplay> {
    checkSeq(seq, 'seq');
    const msg = await this.#read(seq);
    if (!msg) {
      throw new VigilError(
        ErrorCode.NotFound,
        `dead letter ${seq} does not exist (replayed already, expired, or never written)`,
        false,
      );
    }
    const parsed = parseLetter(msg);
    if (parsed.type === 'undecodable') {
      throw new TerminalError(
        `dead letter ${seq} holds an undecodable request, which cannot be replayed: ${parsed.error.message}`,
        ErrorCode.InvalidRequest,
      );
    }
    const { task } = parsed.letter;

    const entry = await this.#tasks.get(task.id);
    const record = entry?.operation === 'PUT' ? readRecord(entry) : undefined;
    if (record && !isOutcomeOf(record, task)) {
      // The record is not this letter's failure (a later run's, or a success): the task was
      // replayed already or did not die after all, so only the stale letter goes.
      await this.#deleteLetter(seq);
      return { taskId: task.id };
    }
    let deleted: KvEntry | undefined;
    if (entry && record) {
      try {
        await this.#tasks.delete(task.id, { previousSeq: entry.revision });
        deleted = entry;
      } catch (err) {
        // Another replay of this letter deleted it first; its request and ours share a message
        // id, so going on publishes nothing new.
        if (!isRevisionConflict(err)) throw err;
      }
    }

    const now = Math.max(Date.now(), task.createdAt + 1);
    const replayed: RequestEnvelope = {
      ...task,
      // A new createdAt keeps the deadline budget the same however often a task is replayed, and
      // tells this run's record apart from the dead run's (see isOutcomeOf).
      createdAt: now,
      deadline: now + Math.max(0, task.deadline - task.createdAt),
    };
    // Nobody waits on the original reply subject any more.
    delete replayed.replyTo;
    try {
      await this.#js.publish(
        subjects.request(this.#region, task.model, task.priority, task.id),
        encode(replayed),
        { msgID: `${task.id}:replay:${seq}`, timeout: this.#publishTimeoutMs },
      );
    } catch (err) {
      // Put the dead record back so the task does not look unknown while the letter remains.
      if (deleted) await this.#tasks.create(task.id, deleted.value).catch(() => undefined);
      throw publishError(err);
    }
    await this.#deleteLetter(seq);
    return { taskId: task.id };
  }

  /** Reads one letter from the stream leader (direct gets may be served by a lagging replica). */
  #read(seq: number): Promise<StoredMsg | null> {
    return this.#jsm.streams.getMessage(this.#stream, { seq });
  }

  async #deleteLetter(seq: number): Promise<void> {
    try {
      await this.#jsm.streams.deleteMessage(this.#stream, seq, false);
    } catch (err) {
      // A concurrent replay deleted it first. The server words that several ways ("no message
      // found", "sequence not found") depending on where the sequence sits, so look, not parse.
      if (!(err instanceof JetStreamApiError) || (await this.#read(seq))) throw err;
    }
  }

  #summary(msg: StoredMsg, parsed: ParsedLetter): DeadLetterSummary {
    const prefix = subjects.deadLetter(this.#region, '');
    const model = msg.subject.startsWith(prefix) ? msg.subject.slice(prefix.length) : msg.subject;
    const base = { seq: msg.seq, time: msg.time.toISOString(), model };
    if (parsed.type === 'undecodable') {
      const taskId = msg.header?.get(DEAD_LETTER_HEADERS.taskId);
      const tenant = msg.header?.get(DEAD_LETTER_HEADERS.tenant);
      return {
        ...base,
        ...(taskId ? { taskId } : {}),
        ...(tenant ? { tenant } : {}),
        error: parsed.error,
        undecodable: true,
      };
    }
    const { letter } = parsed;
    return {
      ...base,
      taskId: letter.task.id,
      tenant: letter.task.tenant,
      state: letter.error.code === ErrorCode.RetriesExhausted ? TaskState.Dead : TaskState.Failed,
      attempts: letter.attempts,
      error: { code: letter.error.code, message: letter.error.message },
      undecodable: false,
    };
  }
}

function checkSeq(seq: number, what: string): void {
  if (!Number.isSafeInteger(seq) || seq < 1) {
    throw new ValidationError('must be a stream sequence: a positive integer', what);
  }
}

/** A letter as Vigil wrote it, or the reason it cannot be read as one. */
function parseLetter(msg: StoredMsg): ParsedLetter {
  const header = msg.header?.get(ERROR_HEADER);
  if (header) {
    const colon = header.indexOf(': ');
    const code = colon > 0 ? header.slice(0, colon) : '';
    return KNOWN_CODES.has(code)
      ? {
          type: 'undecodable',
          error: { code: code as ErrorCode, message: header.slice(colon + 2) },
        }
      : { type: 'undecodable', error: { code: ErrorCode.InvalidPayload, message: header } };
  }
  try {
    return { type: 'letter', letter: decodeAs(deadLetterSchema, msg.data, 'dead letter') };
  } catch (err) {
    return {
      type: 'undecodable',
      error: {
        code: ErrorCode.InvalidPayload,
        message: `the dead letter is unreadable: ${(err as Error).message}`,
      },
    };
  }
}

function readRecord(entry: KvEntry): TaskRecord | undefined {
  try {
    return decodeAs(taskRecordSchema, entry.value, 'task record');
  } catch {
    return undefined;
  }
}

/**
 * True when `record` is the failure the letter's run stored. Every replay gives its request a new
 * `createdAt`, which the actor copies into the record, so a record from a later run never matches.
 */
function isOutcomeOf(record: TaskRecord, task: RequestEnvelope): boolean {
  return (
    record.createdAt === task.createdAt &&
    (record.state === TaskState.Failed || record.state === TaskState.Dead)
  );
}

function publishError(err: unknown): VigilError {
  if (err instanceof JetStreamApiError && err.code === STREAM_STORE_FAILED) {
    return new VigilError(ErrorCode.QueueFull, `the request queue is full: ${err.message}`, true, {
      cause: err,
      retryAfterMs: 2_000,
    });
  }
  return new VigilError(
    ErrorCode.Unavailable,
    `could not queue the replayed task: ${(err as Error).message}`,
    true,
    { cause: err, retryAfterMs: 1_000 },
  );
}

/**
 * Opens the dead-letter admin for `options.region`.
 * @throws VigilError `unavailable` when the region's dead-letter stream does not exist.
 */
export async function createDeadLetterAdmin(
  nc: NatsConnection,
  options: DeadLetterAdminOptions,
): Promise<DeadLetterAdmin> {
  nameToken(options.region, 'region');
  const js = jetstream(nc);
  const jsm = await js.jetstreamManager();
  const stream = assetNames.deadLetterStream(options.region);
  try {
    await jsm.streams.info(stream);
  } catch (err) {
    if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound) {
      throw new VigilError(
        ErrorCode.Unavailable,
        `region '${options.region}' has no dead-letter stream ${stream}: is the region provisioned?`,
        true,
        { cause: err },
      );
    }
    throw err;
  }
  const tasks = await new Kvm(js).open(assetNames.taskBucket(options.region));
  return new DeadLetterAdminImpl(js, jsm, tasks, options);
}
