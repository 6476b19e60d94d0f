/**
 * What the OpenAI routes share: their dependencies, the model lookup by kind, running a task to
 * its end within the sync wait, and reading its result as its kind promises.
 */
import { trace } from '@opentelemetry/api';
import type { Context } from 'hono';
import type { z } from 'zod';
import {
  ErrorCode,
  Priority,
  ValidationError,
  VigilError,
  type ModelDeployment,
  type VigilClient,
} from '../../protocol/index.js';
import { requireModel, type ModelCatalog } from './catalog.js';
import type { GatewayEnv } from './gateway-env.js';
import type { BodyLimits } from './json-body.js';
import type { SubmittedTask, TaskSubmission, TaskSubmitter } from './submit-task.js';
import { clientGone } from './client-gone.js';
import type { ClientRetries } from './client-retries.js';
import type { TaskCanceller } from './task-cancel.js';

/** What the OpenAI routes need. */
export interface OpenAiRouteDeps {
  catalog: ModelCatalog;
  submitter: TaskSubmitter;
  /** Reads a streamed task's events. */
  client: VigilClient;
  /** Cancels the task of a stream whose client went away and did not come back. */
  canceller: TaskCanceller;
  /** Finds the task of a request a client retries without a key. */
  retries: ClientRetries;
  /** How often an idle stream sends a keep-alive comment, ms. */
  keepAliveMs: number;
  /** How long a stream's task waits for its client to come back, ms. */
  abandonGraceMs: number;
  /** Longest a call waits for its result, ms; OpenAI clients cannot follow a 202. */
  maxSyncWaitMs: number;
  /** How much of a request body is read, and for how long. */
  body: BodyLimits;
}

/** Epoch seconds, OpenAI's timestamps. */
export const seconds = (ms: number): number => Math.floor(ms / 1000);

/** A task that ended within the wait, with its final record. */
export type FinishedTask = SubmittedTask & { outcome: NonNullable<SubmittedTask['outcome']> };

/** The catalog's model `name`, which must be of `kind` (a 400 otherwise). */
export function modelOfKind(
  catalog: ModelCatalog,
  name: string,
  kind: ModelDeployment['kind'],
): ModelDeployment {
  const model = requireModel(catalog, name);
  if (model.kind !== kind) {
    throw new ValidationError(
      `model '${name}' is a ${model.kind} model, not a ${kind} model`,
      'model',
    );
  }
  return model;
}

/**
 * Runs a task to its end within the sync wait; OpenAI clients cannot follow a 202. A client's
 * retry of a request whose task outlived the wait (`body` is its fingerprint's) waits for that
 * task rather than starting another (`client-retries.ts`).
 */
export async function runToEnd(
  c: Context<GatewayEnv>,
  deps: OpenAiRouteDeps,
  submission: Omit<TaskSubmission, 'waitMs' | 'priority'>,
  body: unknown,
): Promise<FinishedTask> {
  const fingerprint = deps.retries.fingerprint(c, body);
  const earlier =
    fingerprint === undefined ? undefined : await deps.retries.earlier(c, fingerprint);
  if (earlier) {
    const outcome = await deps.client.waitForOutcome(
      earlier.taskId,
      deps.maxSyncWaitMs,
      clientGone(c),
      earlier.region,
      c.get('tenant'),
    );
    if (!outcome) throw stillRunning(earlier.taskId);
    return { ...earlier, duplicate: true, outcome };
  }
  const { taskId, region, duplicate, outcome } = await deps.submitter.submit(c, {
    ...submission,
    priority: Priority.Interactive,
    waitMs: deps.maxSyncWaitMs,
  });
  if (!outcome) {
    // Still running: a retry with the same Idempotency-Key, or the client's own retry of the
    // same request, picks up the same task.
    if (fingerprint !== undefined) await deps.retries.remember(fingerprint, { taskId, region });
    throw stillRunning(taskId);
  }
  return { taskId, region, duplicate, outcome };
}

function stillRunning(taskId: string): VigilError {
  return new VigilError(ErrorCode.DeadlineExceeded, `task ${taskId} is still running`, true, {
    retryAfterMs: 1000,
  });
}

/**
 * A succeeded task's result read as the output its model's kind promises. A model that breaks
 * its contract is a server fault (500 `internal`), not something to pass on half-formed.
 */
export function modelResult<T>(schema: z.ZodType<T>, result: unknown, model: string): T {
  const parsed = schema.safeParse(result);
  if (!parsed.success) {
    throw new VigilError(
      ErrorCode.Internal,
      `model '${model}' returned a result that does not match its kind's output`,
      false,
    );
  }
  return parsed.data;
}

/** OpenAI's `usage` object. */
export function usage(prompt: number, completion: number) {
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
  };
}

/** OpenAI's `user`: the end user's id, kept on the request's trace for abuse tracing. */
export function noteEndUser(user: string | null | undefined): void {
  if (user) trace.getActiveSpan()?.setAttribute('vigil.openai.user', user);
}
