/**
 * Task records in the region's task bucket, as the actor writes them. Every write is conditional
 * on the revision the attempt last saw, so attempts of one task that overlap (a redelivery while a
 * stalled process still runs it) never overwrite each other: exactly one final record is ever
 * stored, and the one that loses learns what was stored instead.
 */
import type { KV } from '@nats-io/kv';
import { SpanStatusCode } from '@opentelemetry/api';
import type { Logger } from 'pino';
import {
  checkTaskFields,
  ErrorCode,
  isRevisionConflict,
  VigilError,
  decodeAs,
  encode,
  ENVELOPE_VERSION,
  FINAL_STATES,
  taskRecordSchema,
  TaskEventType,
  TaskState,
  type RequestEnvelope,
  type TaskRecord,
} from '../protocol/index.js';
import type { ActorSpans } from './actor-spans.js';
import type { Attempt } from './attempt.js';
import type { ModelHandle } from './model-handle.js';
import type { Replies } from './replies.js';

/** Conditional writes tried before a record that keeps changing is given up on. */
const MAX_WRITE_TRIES = 5;

/**
 * What a record, a reply and an event need to know of a task: a decoded envelope has it all, and
 * a request no actor can decode may still give it up (`protocol/unreadable-requests.ts`).
 */
export type TaskIdentity = Pick<RequestEnvelope, 'id' | 'tenant' | 'model' | 'createdAt'> &
  Partial<Pick<RequestEnvelope, 'replyTo' | 'deadline'>>;

/** A final record as stored, with its bytes, which are also the reply. */
export interface StoredRecord {
  record: TaskRecord;
  payload: Uint8Array;
}

/** Options of {@link createTaskRecords}. */
export interface TaskRecordsOptions {
  /** Written into every record: who ran the task, with which model version. */
  actorId: string;
  model: ModelHandle;
  spans: ActorSpans;
  /** Running and progress records are announced as events. */
  replies: Replies;
  /** Largest record that can be stored and read back: bucket, server and wire limits. */
  maxRecordBytes: number;
  log: Logger;
}

/**
 * A result that cannot be stored as it is: deeper, larger or of other types than a record can
 * carry to whoever reads it. Terminal: the same run would produce it again.
 */
export class UnstorableResultError extends VigilError {
  override name = 'UnstorableResultError';
}

/** The actor's reads and writes of task records. */
export interface TaskRecords {
  /** A record of `task` in `state`, as this actor writes it (`finishedAt` set for final states). */
  build(
    task: TaskIdentity,
    attempt: number,
    state: TaskRecord['state'],
    startedAt?: number,
  ): TaskRecord;
  /** The stored record; undefined when there is none or it cannot be read. */
  read(taskId: string): Promise<StoredRecord | undefined>;
  /**
   * Stores `record` as the task's outcome unless another attempt stored one first: the create or
   * update is conditional on the revision `attempt` last saw, so exactly one final record is ever
   * written. Returns whichever record is stored. Throws when NATS cannot be reached.
   */
  finalize(record: TaskRecord, attempt?: Attempt): Promise<StoredRecord>;
  /**
   * Stores `record` only if the task has no record at all: for a request that could not be read,
   * which must never end a task some other message is running or has finished. Returns the
   * stored record, and whether it is `record`.
   */
  createOnly(record: TaskRecord): Promise<StoredRecord & { created: boolean }>;
  /**
   * Writes a `running` record for a long attempt in the background (`attempt.marking`), learning
   * whether another attempt already finished: then the attempt is superseded and aborted.
   */
  markRunning(attempt: Attempt): void;
  /**
   * Stores the attempt's latest progress in its `running` record (conditional on the revision
   * this attempt wrote, so it never overwrites another attempt's record) and tells subscribers.
   */
  writeProgress(attempt: Attempt): Promise<void>;
}

/**
 * Stores `record` in `tasks` only if the task has no record at all (see
 * {@link TaskRecords.createOnly}), for writers that end a task no actor ran. Returns the stored
 * record, and whether it is `record`. Throws when NATS cannot be reached or the stored record
 * cannot be read.
 */
export async function createRecordOnly(
  tasks: KV,
  record: TaskRecord,
): Promise<StoredRecord & { created: boolean }> {
  const payload = encode(record);
  try {
    await tasks.create(record.id, payload);
    return { record, payload, created: true };
  } catch (err) {
    if (!isRevisionConflict(err)) throw err;
    const entry = await tasks.get(record.id);
    if (entry?.operation !== 'PUT') throw new Error(`task ${record.id} changed while being ended`);
    const stored = decodeAs(taskRecordSchema, entry.value, 'task record');
    return { record: stored, payload: entry.value, created: false };
  }
}

/** The task records of `tasks` (the region's task bucket). */
export function createTaskRecords(tasks: KV, options: TaskRecordsOptions): TaskRecords {
  return new TaskRecordsImpl(tasks, options);
}

class TaskRecordsImpl implements TaskRecords {
  readonly #tasks: KV;
  readonly #o: TaskRecordsOptions;

  constructor(tasks: KV, options: TaskRecordsOptions) {
    this.#tasks = tasks;
    this.#o = options;
  }

  build(
    task: TaskIdentity,
    attempt: number,
    state: TaskRecord['state'],
    startedAt?: number,
  ): TaskRecord {
    const record: TaskRecord = {
      v: ENVELOPE_VERSION,
      id: task.id,
      tenant: task.tenant,
      model: task.model,
      version: this.#o.model.version,
      state,
      attempt,
      createdAt: task.createdAt,
      actor: this.#o.actorId,
    };
    if (startedAt !== undefined) record.startedAt = startedAt;
    if (FINAL_STATES.has(state)) record.finishedAt = Date.now();
    return record;
  }

  async read(taskId: string): Promise<StoredRecord | undefined> {
    const entry = await this.#tasks.get(taskId);
    if (entry?.operation !== 'PUT') return undefined;
    const record = this.#decode(entry.value);
    return record && { record, payload: entry.value };
  }

  async finalize(record: TaskRecord, attempt?: Attempt): Promise<StoredRecord> {
    const span = this.#o.spans.startStore(record);
    try {
      const stored = await this.#compareAndSet(record, attempt);
      if (stored.record !== record) span.setAttribute('vigil.superseded', true);
      return stored;
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      throw err;
    } finally {
      span.end();
    }
  }

  createOnly(record: TaskRecord): Promise<StoredRecord & { created: boolean }> {
    return createRecordOnly(this.#tasks, record);
  }

  /**
   * A record's bytes, refused when a reader could not decode them (the result is checked against
   * the wire's limits, as the gateway will decode it) or the bucket could not hold them.
   */
  #storable(record: TaskRecord): Uint8Array {
    if (record.result !== undefined) {
      try {
        checkTaskFields({ result: record.result });
      } catch (err) {
        const reason = err instanceof Error ? err.message : String(err);
        throw new UnstorableResultError(ErrorCode.InvalidPayload, `the model's ${reason}`, false);
      }
    }
    const payload = encode(record);
    if (payload.byteLength > this.#o.maxRecordBytes) {
      throw new UnstorableResultError(
        ErrorCode.PayloadTooLarge,
        `the model's result makes a ${payload.byteLength}-byte task record, more than the ${this.#o.maxRecordBytes} bytes one can be`,
        false,
      );
    }
    return payload;
  }

  /** {@link finalize}'s conditional write. */
  async #compareAndSet(record: TaskRecord, attempt?: Attempt): Promise<StoredRecord> {
    const payload = this.#storable(record);
    let revision = attempt?.revision;
    for (let tries = 0; tries < MAX_WRITE_TRIES; tries += 1) {
      try {
        if (revision === undefined) await this.#tasks.create(record.id, payload);
        else await this.#tasks.update(record.id, payload, revision);
        return { record, payload };
      } catch (err) {
        if (!isRevisionConflict(err)) throw err;
        // Someone wrote since: a final record stands; anything else is overwritten on its revision.
        const entry = await this.#tasks.get(record.id);
        const current = entry?.operation === 'PUT' ? this.#decode(entry.value) : undefined;
        if (entry && current && FINAL_STATES.has(current.state)) {
          return { record: current, payload: entry.value };
        }
        revision = entry?.revision;
      }
    }
    throw new Error(`could not store the outcome of task ${record.id}: the record kept changing`);
  }

  markRunning(attempt: Attempt): void {
    const { task } = attempt;
    const payload = encode(this.build(task, attempt.number, TaskState.Running, attempt.startedAt));
    attempt.marking = (async () => {
      try {
        attempt.revision = await this.#tasks.create(task.id, payload);
        this.#o.replies.emit(task, TaskEventType.Running, attempt.number);
        if (attempt.progress) await this.writeProgress(attempt);
      } catch (err) {
        if (!isRevisionConflict(err)) return;
        const entry = await this.#tasks.get(task.id);
        const current = entry?.operation === 'PUT' ? this.#decode(entry.value) : undefined;
        if (current && FINAL_STATES.has(current.state)) {
          // Another attempt finished while this one ran: its outcome stands, this run is moot.
          attempt.superseded = true;
          attempt.abort.abort();
        } else if (entry) {
          attempt.revision = await this.#tasks
            .update(task.id, payload, entry.revision)
            .catch(() => entry.revision);
        }
      }
    })().catch((err: unknown) =>
      this.#o.log.warn({ task_id: task.id, err }, 'could not mark task running'),
    );
  }

  async writeProgress(attempt: Attempt): Promise<void> {
    const progress = attempt.progress;
    if (!progress || attempt.revision === undefined || attempt.superseded) return;
    attempt.progressDirty = false;
    const record = this.build(attempt.task, attempt.number, TaskState.Running, attempt.startedAt);
    record.progress = progress;
    try {
      attempt.revision = await this.#tasks.update(
        attempt.task.id,
        encode(record),
        attempt.revision,
      );
      this.#o.replies.emit(attempt.task, TaskEventType.Progress, attempt.number, { progress });
    } catch (err) {
      // Another attempt wrote the record since: progress is advisory, the final write decides.
      if (!isRevisionConflict(err))
        this.#o.log.debug({ task_id: attempt.task.id, err }, 'progress not stored');
    }
  }

  #decode(bytes: Uint8Array): TaskRecord | undefined {
    try {
      return decodeAs(taskRecordSchema, bytes, 'task record');
    } catch (err) {
      this.#o.log.error({ err }, 'stored task record is unreadable');
      return undefined;
    }
  }
}
