/**
 * Stopping tasks from the gateway: a cancel request in the region's cancel bucket, which every
 * actor host of the region watches (`actors/cancellations.ts`). The gateway checks first that the
 * task is the tenant's; the actor running it aborts its model run, and a queued task is ended at
 * once. An OpenAI stream whose client went away leaves a cancel that takes effect after a grace,
 * withdrawn if the client resumes the stream at any gateway before then.
 */
import type { JetStreamClient } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import {
  assetNames,
  CancelReason,
  cancelRequestSchema,
  decodeAs,
  encode,
  ENVELOPE_VERSION,
  type CancelRequest,
} from '../../protocol/index.js';

/** The task a cancel is about, as the gateway knows it. */
export interface CancelTarget {
  taskId: string;
  /** The region that holds it. */
  region: string;
  tenant: string;
  model: string;
  createdAt: number;
}

/** Writes and withdraws cancel requests. */
export interface TaskCanceller {
  /** Asks the task's region to stop it now. */
  cancel(target: CancelTarget): Promise<void>;
  /** Its stream's reader went away: the task is stopped after `graceMs` unless one comes back. */
  abandon(target: CancelTarget, graceMs: number): Promise<void>;
  /** A reader came back: a pending abandonment is withdrawn (an explicit cancel stays). */
  resumed(taskId: string, region: string): Promise<void>;
}

/** Cancels through `hubJs` (the hub's JetStream, at an edge site). */
export function createTaskCanceller(hubJs: JetStreamClient): TaskCanceller {
  const buckets = new Map<string, Promise<KV>>();
  const bucket = (region: string): Promise<KV> => {
    let kv = buckets.get(region);
    if (!kv) {
      kv = new Kvm(hubJs).open(assetNames.cancelBucket(region));
      // A failed open is tried again next time.
      kv.catch(() => buckets.delete(region));
      buckets.set(region, kv);
    }
    return kv;
  };
  const write = async (target: CancelTarget, reason: CancelReason, after?: number) => {
    const request: CancelRequest = {
      v: ENVELOPE_VERSION,
      taskId: target.taskId,
      tenant: target.tenant,
      model: target.model,
      createdAt: target.createdAt,
      reason,
      at: Date.now(),
      ...(after === undefined ? {} : { after }),
    };
    await (await bucket(target.region)).put(target.taskId, encode(request));
  };
  return {
    cancel: (target) => write(target, CancelReason.Requested),
    abandon: (target, graceMs) => write(target, CancelReason.Abandoned, Date.now() + graceMs),
    async resumed(taskId, region) {
      const kv = await bucket(region);
      const entry = await kv.get(taskId);
      if (entry?.operation !== 'PUT') return;
      const request = decodeAs(cancelRequestSchema, entry.value, 'cancel request');
      if (request.reason !== CancelReason.Abandoned) return;
      // Conditional: a cancel written since (its owner's) is not withdrawn with it.
      await kv.delete(taskId, { previousSeq: entry.revision }).catch(() => undefined);
    },
  };
}
