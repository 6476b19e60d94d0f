/**
 * One task per OpenAI request, however often the client retries it. The official clients retry
 * a 5xx or a timeout twice without an `Idempotency-Key`, so a model slower than the sync wait
 * (answered 504 while its task runs on) would run once per retry. When an un-keyed request's task
 * outlives the wait, its fingerprint (tenant, route, body) is remembered in a bucket every gateway
 * shares; a request that says it is a retry (`X-Stainless-Retry-Count` > 0) and matches one waits
 * for that task instead of starting another. A first attempt never matches: two identical requests
 * a user sends on purpose are two tasks. The normal path costs nothing: the bucket is written only
 * when a wait runs out, and read only by retries.
 */
import { createHash } from 'node:crypto';
import type { JetStreamClient } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { Context } from 'hono';
import { assetNames } from '../../protocol/index.js';
import type { GatewayEnv } from './gateway-env.js';

/** A task an earlier attempt of a request left running. */
export interface RunningTask {
  taskId: string;
  region: string;
}

/** Remembers un-keyed requests whose task outlived the wait. */
export interface ClientRetries {
  /** The request's fingerprint, when it can be retried without a key (it has none). */
  fingerprint(c: Context<GatewayEnv>, body: unknown): string | undefined;
  /** The task an earlier attempt left running, when this request is a retry of one. */
  earlier(c: Context<GatewayEnv>, fingerprint: string): Promise<RunningTask | undefined>;
  /** Remembers that the request's task goes on after its answer (a retry will come). */
  remember(fingerprint: string, task: RunningTask): Promise<void>;
}

/** Client retries through `hubJs` (the hub's JetStream, at an edge site). */
export function createClientRetries(hubJs: JetStreamClient): ClientRetries {
  let bucket: Promise<KV> | undefined;
  const open = (): Promise<KV> => {
    bucket ??= new Kvm(hubJs).open(assetNames.clientRetryBucket);
    // A failed open is tried again next time.
    bucket.catch(() => (bucket = undefined));
    return bucket;
  };
  return {
    fingerprint(c, body) {
      if (c.req.header('Idempotency-Key') !== undefined) return undefined;
      return createHash('sha256')
        .update(c.get('tenant'))
        .update('\0')
        .update(c.req.path)
        .update('\0')
        .update(JSON.stringify(body))
        .digest('hex');
    },
    async earlier(c, fingerprint) {
      const retryCount = Number(c.req.header('X-Stainless-Retry-Count') ?? 0);
      if (!(retryCount > 0)) return undefined;
      const entry = await (await open()).get(fingerprint).catch(() => null);
      if (entry?.operation !== 'PUT') return undefined;
      try {
        const task = JSON.parse(entry.string()) as RunningTask;
        return typeof task.taskId === 'string' && typeof task.region === 'string'
          ? task
          : undefined;
      } catch {
        return undefined;
      }
    },
    async remember(fingerprint, task) {
      await (await open()).put(fingerprint, JSON.stringify(task)).catch(() => undefined);
    },
  };
}
