/**
 * Recovery actions and their record. Each action is a request to a node (restart a model's
 * executor, drain a host: `vigil.ctl.<region>.<host>.<command>`, answered by the actor host) or a
 * write to the control bucket that other nodes honour (`route.<model>`, read by gateways'
 * region routers; `rollout.<model>.hold`). Every run is appended to the `VIGIL_CONTROL_LOG`
 * stream with who ran it, when, and how it went.
 */
import type { JetStreamClient } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { CONTROL_LOG_SUBJECT_PREFIX } from '../../protocol/definitions.js';
import type { Subject } from './observe.js';
import { ActionType } from './rules.js';

/** How long a node has to answer a command, ms: a restart waits for the new executor. */
export const COMMAND_TIMEOUT_MS = 15_000;

/** A route override in the control bucket (`route.<model>`): regions to send work elsewhere from. */
export interface RouteOverride {
  model: string;
  /** Regions new work for the model avoids while another region has a healthy actor. */
  avoid: string[];
  rule: string;
  by: string;
  at: number;
}

/** The record of one action run. */
export interface ActionRecord {
  action: ActionType;
  rule: string;
  subject: Subject;
  ok: boolean;
  /** What the node answered, or what was written; on failure, why. */
  detail: Record<string, unknown>;
  /** The controller that ran it. */
  controllerId: string;
  startedAt: number;
  finishedAt: number;
}

/** The key of a model's route override. */
export function routeOverrideKey(model: string): string {
  return `route.${model}`;
}

/** The key of a model's rollout hold. */
export function rolloutHoldKey(model: string): string {
  return `rollout.${model}.hold`;
}

/** Runs actions and records them. */
export interface ActionRunner {
  /** Runs `action` on `subject` for `rule`, records it, and returns the record. Never throws. */
  run(action: ActionType, rule: string, subject: Subject): Promise<ActionRecord>;
}

/** Creates a runner acting as `controllerId`. */
export function createActionRunner(
  nc: NatsConnection,
  js: JetStreamClient,
  control: KV,
  controllerId: string,
): ActionRunner {
  const command = async (
    subject: Subject,
    name: 'restart' | 'drain',
    reason: string,
  ): Promise<Record<string, unknown>> => {
    if (!subject.host) throw new Error('the subject names no host');
    const reply = await nc.request(
      `vigil.ctl.${subject.region}.${subject.host}.${name}`,
      JSON.stringify({ model: subject.model, reason }),
      { timeout: COMMAND_TIMEOUT_MS },
    );
    const answer = reply.json<{ ok: boolean; error?: string } & Record<string, unknown>>();
    if (answer.ok !== true) throw new Error(answer.error ?? 'refused');
    return answer;
  };

  const perform = async (
    action: ActionType,
    rule: string,
    subject: Subject,
  ): Promise<Record<string, unknown>> => {
    const reason = `rule ${rule}`;
    switch (action) {
      case ActionType.RestartActor:
        return command(subject, 'restart', reason);
      case ActionType.DrainHost:
        return command(subject, 'drain', reason);
      case ActionType.ShiftTraffic: {
        const model = subject.model!;
        const key = routeOverrideKey(model);
        // Add this region to what the model avoids; a concurrent writer makes the CAS fail and
        // the action is recorded as failed, to be run again after the cooldown.
        const entry = await control.get(key);
        const current = entry?.operation === 'PUT' ? entry.json<RouteOverride>().avoid : [];
        const override: RouteOverride = {
          model,
          avoid: [...new Set([...current, subject.region])],
          rule,
          by: controllerId,
          at: Date.now(),
        };
        const data = JSON.stringify(override);
        const revision =
          entry === null
            ? await control.create(key, data)
            : await control.update(key, data, entry.revision);
        return { key, revision, avoid: override.avoid };
      }
      case ActionType.HoldRollout: {
        const key = rolloutHoldKey(subject.model!);
        const revision = await control.put(
          key,
          JSON.stringify({ model: subject.model, rule, by: controllerId, at: Date.now() }),
        );
        return { key, revision };
      }
    }
  };

  return {
    async run(action, rule, subject) {
      const startedAt = Date.now();
      let ok = true;
      let detail: Record<string, unknown>;
      try {
        detail = await perform(action, rule, subject);
      } catch (err) {
        ok = false;
        detail = { error: err instanceof Error ? err.message : String(err) };
      }
      const record: ActionRecord = {
        action,
        rule,
        subject,
        ok,
        detail,
        controllerId,
        startedAt,
        finishedAt: Date.now(),
      };
      try {
        await js.publish(`${CONTROL_LOG_SUBJECT_PREFIX}.${rule}`, JSON.stringify(record));
      } catch (err) {
        record.detail = { ...record.detail, recordError: (err as Error).message };
      }
      return record;
    },
  };
}
