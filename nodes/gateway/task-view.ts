/**
 * The JSON a client sees of a task, from its record or its queued request, and the response that
 * carries a finished one.
 */
import type { Context } from 'hono';
import {
  ErrorCode,
  TASK_ID,
  TaskState,
  VigilError,
  type ModelDeployment,
  type TaskRecord,
  type TaskStatus,
  type VigilClient,
  type WireError,
} from '../../protocol/index.js';
import { errorResponse } from './http-errors.js';

/** A task as `GET /v1/tasks/{id}` shows it. */
export interface TaskView {
  id: string;
  object: 'task';
  model: string;
  version: string | null;
  state: TaskState;
  /** The region that holds the task: where it runs or ran. */
  region: string;
  /** Attempts started so far (0 while queued). */
  attempts: number;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  result?: unknown;
  error?: WireError;
  /** Last progress the model reported, while it runs. */
  progress?: { fraction: number; message?: string };
}

const iso = (ms: number | undefined): string | null =>
  ms === undefined ? null : new Date(ms).toISOString();

/** Renders a task status for clients. */
export function taskView(status: TaskStatus): TaskView {
  if (status.state === TaskState.Accepted) {
    const { request } = status;
    return {
      id: request.id,
      object: 'task',
      model: request.model,
      version: request.version ?? null,
      state: TaskState.Accepted,
      region: status.region,
      attempts: 0,
      created_at: new Date(request.createdAt).toISOString(),
      started_at: null,
      finished_at: null,
    };
  }
  const { record } = status;
  const view: TaskView = {
    id: record.id,
    object: 'task',
    model: record.model,
    version: record.version,
    state: record.state,
    region: status.region,
    attempts: record.attempt,
    created_at: new Date(record.createdAt).toISOString(),
    started_at: iso(record.startedAt),
    finished_at: iso(record.finishedAt),
  };
  if (record.result !== undefined) view.result = record.result;
  if (record.error !== undefined) view.error = record.error;
  if (record.progress !== undefined) view.progress = record.progress;
  return view;
}

/** A task just accepted, as a client sees it before anything else is known. */
export function acceptedView(
  taskId: string,
  model: Pick<ModelDeployment, 'name' | 'version'>,
  region: string,
): TaskView {
  return {
    id: taskId,
    object: 'task',
    model: model.name,
    version: model.version,
    state: TaskState.Accepted,
    region,
    attempts: 0,
    created_at: new Date().toISOString(),
    started_at: null,
    finished_at: null,
  };
}

/** The task `id` when it exists and is `tenant`'s; 404 otherwise (another's is nobody's). */
export async function ownTask(
  client: VigilClient,
  id: string,
  tenant: string,
): Promise<TaskStatus> {
  const notFound = new VigilError(ErrorCode.NotFound, `task '${id}' does not exist`, false);
  if (!TASK_ID.test(id)) throw notFound;
  const status = await client.getTask(id);
  if (!status || ownerOf(status) !== tenant) throw notFound;
  return status;
}

/** The tenant that owns a task status. */
export function ownerOf(status: TaskStatus): string {
  return status.state === TaskState.Accepted ? status.request.tenant : status.record.tenant;
}

/** A finished task: 200 with the task, or the error's status with the error and the task. */
export function finalResponse(c: Context, record: TaskRecord, region: string): Response {
  const view = taskView({ region, state: record.state, record });
  if (record.state === TaskState.Succeeded) return c.json(view, 200);
  const error = record.error ?? {
    code: ErrorCode.Internal,
    message: 'task failed',
    retryable: false,
  };
  return errorResponse(c, { ...error, retryable: false }, { task: view });
}
