/**
 * What an actor counts about its tasks, through the OpenTelemetry metrics API (a no-op until the
 * node starts the SDK): the business layer (tasks finished per outcome, time to result, outputs
 * failing their model's checks) and the model's own run time. Attribute objects are built once
 * per actor, so counting allocates nothing on the hot path.
 */
import { metrics, type Attributes, type Counter, type Histogram } from '@opentelemetry/api';

/** How a task ended, as counted. */
export const TaskOutcome = {
  Succeeded: 'succeeded',
  Failed: 'failed',
  /** Dead-lettered: retries exhausted, or undecodable. */
  Dead: 'dead_lettered',
  /** Stopped on request, or because its stream's reader went away. */
  Cancelled: 'cancelled',
} as const;

/** One of the {@link TaskOutcome} values. */
export type TaskOutcome = (typeof TaskOutcome)[keyof typeof TaskOutcome];

/** Time-to-result buckets, seconds: from interactive calls to tasks that queued for minutes. */
const TIME_TO_RESULT_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
];

/** An actor's task instruments. */
export interface TaskMetrics {
  /** A task reached its final state here; `createdAt` is its acceptance time, epoch ms. */
  finished(outcome: TaskOutcome, createdAt: number): void;
  /** An undecodable request was dead-lettered (no task, so no time to result). */
  undecodable(): void;
  /** An attempt failed and the task will be tried again. */
  retried(): void;
  /** One model run ended, successful or not. */
  modelRun(durationMs: number): void;
  /** The model's output failed its declared checks. */
  outputCheckFailed(): void;
  /**
   * Tokens a succeeded task used, per tenant (the cost accounting reads them): prompt and
   * completion counts from its result's `usage`, when it has one.
   */
  usage(tenant: string, result: unknown): void;
}

/** Tenants whose usage attributes are kept; past it they are built per call (still counted). */
const MAX_CACHED_TENANTS = 1024;

/** Instruments for one actor's (model, region). Call after the node started its SDK. */
export function createTaskMetrics(model: string, region: string): TaskMetrics {
  const meter = metrics.getMeter('vigil.actor');
  const base: Attributes = { 'vigil.model': model, 'vigil.region': region };
  const finished: Counter = meter.createCounter('vigil.tasks.finished', {
    description: 'Tasks that reached a final state, by outcome',
    unit: '{task}',
  });
  const byOutcome = new Map<TaskOutcome, Attributes>(
    Object.values(TaskOutcome).map((outcome) => [outcome, { ...base, 'vigil.outcome': outcome }]),
  );
  const timeToResult: Histogram = meter.createHistogram('vigil.task.time_to_result', {
    description: 'From acceptance to the final record, per outcome',
    unit: 's',
    advice: { explicitBucketBoundaries: TIME_TO_RESULT_BUCKETS },
  });
  const retried = meter.createCounter('vigil.tasks.retried', {
    description: 'Attempts that failed retryably and were handed back for another try',
    unit: '{attempt}',
  });
  const runDuration = meter.createHistogram('vigil.model.run.duration', {
    description: 'Time the model spent on one attempt',
    unit: 's',
    advice: { explicitBucketBoundaries: TIME_TO_RESULT_BUCKETS },
  });
  const checkFailures = meter.createCounter('vigil.model.output_check.failures', {
    description: "Outputs that failed their model's declared output checks",
    unit: '{output}',
  });
  const tokens: Counter = meter.createCounter('vigil.tokens', {
    description: 'Tokens of succeeded tasks, by tenant and kind (prompt, completion)',
    unit: '{token}',
  });
  // Attribute objects per tenant, built once: counting allocates nothing on the hot path.
  const tenantAttributes = new Map<string, { prompt: Attributes; completion: Attributes }>();
  const attributesOf = (tenant: string) => {
    let cached = tenantAttributes.get(tenant);
    if (!cached) {
      const withTenant = { ...base, 'vigil.tenant': tenant };
      cached = {
        prompt: { ...withTenant, 'vigil.token.kind': 'prompt' },
        completion: { ...withTenant, 'vigil.token.kind': 'completion' },
      };
      if (tenantAttributes.size < MAX_CACHED_TENANTS) tenantAttributes.set(tenant, cached);
    }
    return cached;
  };
  return {
    finished(outcome, createdAt) {
      const attributes = byOutcome.get(outcome) ?? base;
      finished.add(1, attributes);
      timeToResult.record(Math.max(0, Date.now() - createdAt) / 1000, attributes);
    },
    undecodable: () => finished.add(1, byOutcome.get(TaskOutcome.Dead) ?? base),
    retried: () => retried.add(1, base),
    modelRun: (durationMs) => runDuration.record(durationMs / 1000, base),
    outputCheckFailed: () => checkFailures.add(1, base),
    usage(tenant, result) {
      const counts = (
        result as { usage?: { prompt_tokens?: unknown; completion_tokens?: unknown } }
      )?.usage;
      if (typeof counts !== 'object' || counts === null) return;
      const attributes = attributesOf(tenant);
      if (isTokenCount(counts.prompt_tokens)) tokens.add(counts.prompt_tokens, attributes.prompt);
      if (isTokenCount(counts.completion_tokens)) {
        tokens.add(counts.completion_tokens, attributes.completion);
      }
    },
  };
}

function isTokenCount(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}
