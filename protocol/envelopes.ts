/**
 * Message shapes on the wire and their validation. Payloads are validated where they enter a
 * process from the network (`parse*` below); inside a process the types are trusted.
 */
import { createHash, randomFillSync } from 'node:crypto';
import { z } from 'zod';
import { decode, type DecodeLimits } from './codec.js';
import { ErrorCode, PayloadError, ValidationError, type WireError } from './errors.js';
import { NAME_TOKEN, Priority, TASK_ID } from './subjects.js';
import { ModelKind } from './model-outputs.js';
import { modelCapabilitiesSchema } from './capabilities.js';

/** Current envelope version; a decoder rejects versions it does not know. */
export const ENVELOPE_VERSION = 1;

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

function base32(bytes: Uint8Array): string {
  let out = '';
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(buffer >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(buffer << (5 - bits)) & 31];
  return out;
}

// Task ids are drawn from a pool refilled 4 KiB at a time: one getrandom call per 256 ids
// instead of one per request (measured at ~25 us per call on the gateway's hot path).
const ID_BYTES = 16;
const idPool = new Uint8Array(4096);
let idPoolOffset = idPool.length;

/** A fresh random task id: 128 bits, 26 base32 characters, safe as a subject token and KV key. */
export function newTaskId(): string {
  if (idPoolOffset + ID_BYTES > idPool.length) {
    randomFillSync(idPool);
    idPoolOffset = 0;
  }
  const id = base32(idPool.subarray(idPoolOffset, idPoolOffset + ID_BYTES));
  idPoolOffset += ID_BYTES;
  return id;
}

/**
 * The task id for a client's idempotency key. Deterministic, so a retry reaches the same task, the
 * same JetStream dedup entry and the same result without any lookup table; the tenant is part of
 * the hash so two tenants' keys never collide.
 */
export function taskIdForIdempotencyKey(tenant: string, key: string): string {
  const digest = createHash('sha256').update(tenant).update('\0').update(key).digest();
  return base32(digest.subarray(0, 16));
}

/** The id a submission of `tenant` gets: its key's when it sends one, else a fresh one. */
export function plannedTaskId(tenant: string, idempotencyKey: string | undefined): string {
  return idempotencyKey === undefined
    ? newTaskId()
    : taskIdForIdempotencyKey(tenant, idempotencyKey);
}

const nameToken = z.string().regex(NAME_TOKEN);
const epochMs = z.number().int().nonnegative();

const wireErrorSchema = z.object({
  code: z.enum(Object.values(ErrorCode) as [ErrorCode, ...ErrorCode[]]),
  message: z.string().max(4096),
  retryable: z.boolean(),
  retryAfterMs: epochMs.optional(),
});

/** What a gateway publishes to the request stream: one task. */
export const requestEnvelopeSchema = z.object({
  v: z.literal(ENVELOPE_VERSION),
  id: z.string().regex(TASK_ID),
  tenant: nameToken,
  model: nameToken,
  /** Version pinned by the client or the route; absent = whatever version the actor runs. */
  version: nameToken.optional(),
  priority: z.enum([Priority.Interactive, Priority.Batch]),
  input: z.unknown(),
  params: z.record(z.string(), z.unknown()),
  createdAt: epochMs,
  /** Absolute deadline, epoch ms: work past it ends as `deadline_exceeded`. */
  deadline: epochMs,
  /**
   * Someone reads the task's tokens as they come: the actor publishes them as `token` events.
   * Absent or false, the events carry the lifecycle only, which costs the hot path nothing.
   */
  stream: z.boolean().optional(),
  /** Core subject where the accepting gateway waits for the outcome, if anyone waits. */
  replyTo: z
    .string()
    .max(256)
    .regex(/^vigil\.reply\.[a-z0-9_-]+\.[a-z2-7]{26}$/)
    .optional(),
});

/** A validated request envelope. */
export type RequestEnvelope = z.infer<typeof requestEnvelopeSchema>;

/** Progress a model reports: a fraction from 0 to 1 and an optional short message. */
const progressSchema = z.object({
  fraction: z.number().min(0).max(1),
  message: z.string().max(256).optional(),
});

/** States a task can be in. `accepted` is derived (request queued, no record yet), never stored. */
export const TaskState = {
  Accepted: 'accepted',
  Running: 'running',
  Succeeded: 'succeeded',
  Failed: 'failed',
  Dead: 'dead',
  /** Stopped on request (`POST /v1/tasks/{id}/cancel`, or its stream's reader went away). */
  Cancelled: 'cancelled',
} as const;

/** One of the {@link TaskState} values. */
export type TaskState = (typeof TaskState)[keyof typeof TaskState];

/** States after which nothing changes. */
export const FINAL_STATES: ReadonlySet<TaskState> = new Set([
  TaskState.Succeeded,
  TaskState.Failed,
  TaskState.Dead,
  TaskState.Cancelled,
]);

/**
 * The durable record of a task in the task bucket: its state and, once final, its outcome. The
 * final record is written once, with a revision check, so it is also the deduplicated result.
 */
export const taskRecordSchema = z.object({
  v: z.literal(ENVELOPE_VERSION),
  id: z.string().regex(TASK_ID),
  tenant: nameToken,
  model: nameToken,
  version: nameToken,
  state: z.enum([
    TaskState.Running,
    TaskState.Succeeded,
    TaskState.Failed,
    TaskState.Dead,
    TaskState.Cancelled,
  ]),
  /** Delivery attempt that wrote this record (1 = first). */
  attempt: z.number().int().positive(),
  createdAt: epochMs,
  startedAt: epochMs.optional(),
  finishedAt: epochMs.optional(),
  result: z.unknown().optional(),
  error: wireErrorSchema.optional(),
  /** Last progress the model reported (running tasks only). */
  progress: progressSchema.optional(),
  /** Which actor wrote the record. */
  actor: z.string().max(256).optional(),
});

/** A validated task record. */
export type TaskRecord = z.infer<typeof taskRecordSchema>;

/** Kinds of task event. */
export const TaskEventType = {
  Running: 'running',
  Progress: 'progress',
  /** Text a generative model produced, in order: one or more tokens of one attempt. */
  Token: 'token',
  Retrying: 'retrying',
  Succeeded: 'succeeded',
  Failed: 'failed',
  Dead: 'dead',
  Cancelled: 'cancelled',
} as const;

/** One of the {@link TaskEventType} values. */
export type TaskEventType = (typeof TaskEventType)[keyof typeof TaskEventType];

/** Most characters of text one `token` event carries (an actor splits longer runs). */
export const MAX_EVENT_TEXT_CHARS = 16 * 1024;

/**
 * A task event, published by the actor on the task's event subject (see `subjects.event`) and
 * kept for a while by the region's event stream, whose sequence numbers order and name them.
 * Events are a view of the task; the task record is the truth.
 */
export const taskEventSchema = z.object({
  v: z.literal(ENVELOPE_VERSION),
  type: z.enum([
    TaskEventType.Running,
    TaskEventType.Progress,
    TaskEventType.Token,
    TaskEventType.Retrying,
    TaskEventType.Succeeded,
    TaskEventType.Failed,
    TaskEventType.Dead,
    TaskEventType.Cancelled,
  ]),
  taskId: z.string().regex(TASK_ID),
  tenant: nameToken,
  model: nameToken,
  attempt: z.number().int().positive(),
  at: epochMs,
  /** Set on `progress`. */
  progress: progressSchema.optional(),
  /** Set on `retrying`: when the next attempt may start, ms from `at`. */
  retryInMs: epochMs.optional(),
  error: wireErrorSchema.optional(),
  /** Set on `token`: the text of `tokens` tokens, which follow the attempt's first `index`. */
  text: z.string().max(MAX_EVENT_TEXT_CHARS).optional(),
  index: z.number().int().nonnegative().optional(),
  tokens: z.number().int().positive().optional(),
  /** Set on `token` when the text is not the first answer's: which answer (`params.n`). */
  choice: z.number().int().positive().optional(),
});

/** A validated task event. */
export type TaskEvent = z.infer<typeof taskEventSchema>;

/** Why a task is to stop. */
export const CancelReason = {
  /** Its owner asked (`POST /v1/tasks/{id}/cancel`). */
  Requested: 'requested',
  /**
   * The client reading its stream went away and did not come back: the cancel takes effect at
   * `after`, unless a reader resumes the stream first (which removes the entry).
   */
  Abandoned: 'abandoned',
} as const;

/** One of the {@link CancelReason} values. */
export type CancelReason = (typeof CancelReason)[keyof typeof CancelReason];

/**
 * A request to stop a task, in the region's cancel bucket under the task's id, written by a
 * gateway that checked the task is the tenant's. Every actor host of the region watches the
 * bucket: the one running the task aborts its model run, and a queued task ends when it is
 * delivered, without running. It carries what a record of the task needs, so that one of the
 * hosts can end a queued task at once.
 */
export const cancelRequestSchema = z.object({
  v: z.literal(ENVELOPE_VERSION),
  taskId: z.string().regex(TASK_ID),
  tenant: nameToken,
  model: nameToken,
  createdAt: epochMs,
  reason: z.enum([CancelReason.Requested, CancelReason.Abandoned]),
  /** When it was asked for, epoch ms. */
  at: epochMs,
  /** When it takes effect, epoch ms (an abandoned stream's grace); absent: at once. */
  after: epochMs.optional(),
});

/** A validated cancel request. */
export type CancelRequest = z.infer<typeof cancelRequestSchema>;

/** What an actor is doing, as its heartbeat says. */
export const ActorState = {
  Starting: 'starting',
  Running: 'running',
  /** Its model executor died and is being restarted. */
  Restarting: 'restarting',
  /** Stopped pulling work on SIGTERM; finishing what it has. */
  Draining: 'draining',
  /** Restart intensity exceeded: the host gave up on it. */
  Failed: 'failed',
} as const;

/** One of the {@link ActorState} values. */
export type ActorState = (typeof ActorState)[keyof typeof ActorState];

/** States of an actor's circuit breaker. */
export const BreakerState = {
  Closed: 'closed',
  Open: 'open',
  HalfOpen: 'half-open',
} as const;

/** One of the {@link BreakerState} values. */
export type BreakerState = (typeof BreakerState)[keyof typeof BreakerState];

/**
 * An actor's heartbeat, written to the region's actors bucket every interval and on every change
 * of state. The bucket's entries expire after about three intervals, so a silent actor vanishes.
 */
export const actorHeartbeatSchema = z.object({
  v: z.literal(ENVELOPE_VERSION),
  actorId: z.string().max(256),
  host: z.string().max(256),
  region: nameToken,
  model: nameToken,
  version: nameToken,
  state: z.enum([
    ActorState.Starting,
    ActorState.Running,
    ActorState.Restarting,
    ActorState.Draining,
    ActorState.Failed,
  ]),
  breaker: z.enum([BreakerState.Closed, BreakerState.Open, BreakerState.HalfOpen]),
  isolation: z.string().max(32),
  /** PID of the process running the model (a child process, or the host itself). */
  pid: z.number().int().nonnegative(),
  inFlight: z.number().int().nonnegative(),
  processed: z.number().int().nonnegative(),
  errors: z.number().int().nonnegative(),
  restarts: z.number().int().nonnegative(),
  /** Run latency over the recent window, ms. */
  latencyMs: z.object({ p50: z.number().nonnegative(), p99: z.number().nonnegative() }),
  startedAt: epochMs,
  /** When this beat was written, epoch ms. */
  at: epochMs,
  /** The writer's beat interval, ms: readers judge freshness by it. */
  intervalMs: z.number().int().positive(),
});

/** A validated actor heartbeat. */
export type ActorHeartbeat = z.infer<typeof actorHeartbeatSchema>;

/** A dead-lettered task with the reason it could not finish. */
export const deadLetterSchema = z.object({
  v: z.literal(ENVELOPE_VERSION),
  task: requestEnvelopeSchema,
  error: wireErrorSchema,
  attempts: z.number().int().positive(),
  deadAt: epochMs,
  actor: z.string().max(256).optional(),
});

/** A validated dead-letter record. */
export type DeadLetter = z.infer<typeof deadLetterSchema>;

/** An entry of the model catalog: what gateways accept and actor hosts serve. */
export const modelDeploymentSchema = z.object({
  v: z.literal(ENVELOPE_VERSION),
  name: nameToken,
  kind: z.enum([ModelKind.Embedding, ModelKind.Chat, ModelKind.Echo]),
  description: z.string().max(1024),
  /** The version new requests run on. */
  version: nameToken,
  createdAt: epochMs,
  /** What it honours of the OpenAI request fields; absent: nothing optional, no streaming. */
  capabilities: modelCapabilitiesSchema.optional(),
});

/** A validated model deployment. */
export type ModelDeployment = z.infer<typeof modelDeploymentSchema>;

/** Validates `value` against `schema`, turning the first problem into a `ValidationError`. */
export function validate<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const path = issue && issue.path.length > 0 ? `${what}.${issue.path.join('.')}` : what;
  return throwValidation(issue?.message ?? 'is invalid', path);
}

function throwValidation(message: string, path: string): never {
  throw new ValidationError(message, path);
}

/** Decodes and validates a payload from the network into a `T`, or throws `PayloadError`. */
export function decodeAs<T>(
  schema: z.ZodType<T>,
  bytes: Uint8Array,
  what: string,
  limits?: Partial<DecodeLimits>,
): T {
  const value = decode(bytes, limits);
  try {
    return validate(schema, value, what);
  } catch (err) {
    throw new PayloadError((err as Error).message, { cause: err });
  }
}

/** Builds the wire error for a task that failed or died. */
export function wireError(code: ErrorCode, message: string, retryable = false): WireError {
  return { code, message, retryable };
}
