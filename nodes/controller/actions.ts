/**
 * Recovery actions and their record. Each action is a request to a node (restart a model's
 * executor, drain a host: `vigil.ctl.<region>.<host>.<command>`, answered by the actor host) or a
 * write to the control bucket that other nodes honour (`route.<model>`, read by gateways'
 * region routers; `rollout.<model>.hold`). Every run is appended to the `VIGIL_CONTROL_LOG`
 * stream with who ran it, when, and how it went.
 *
 * The two writes are reversible, and are lifted when their alert resolves. Several alerts may
 * want the same key (two rules holding one model's rollout, one rule shifting a model away from
 * two regions), so each entry lists its holders, one per (rule, subject), and lifting removes only
 * the resolving alert's own: the key is deleted with its last holder.
 */
import type { JetStreamClient } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  hostCommandReplySchema,
  HostCommandName,
  subjects,
  type HostCommand,
} from '../../protocol/index.js';
import type { Subject } from './observe.js';
import { ActionType } from './rules.js';

/** How long a node has to answer a command, ms: a restart waits for the new executor. */
export const COMMAND_TIMEOUT_MS = 15_000;

/** Who wants a reversible action in force: one firing alert. */
export interface Holder {
  rule: string;
  /** The alert's subject key (`<region>[.<host>][.<model>]`). */
  subject: string;
  region: string;
  /** The controller that wrote it, and when. */
  by: string;
  at: number;
}

/** A route override in the control bucket (`route.<model>`): regions to send work elsewhere from. */
export interface RouteOverride {
  model: string;
  /** Regions new work for the model avoids while another region has a healthy actor. */
  avoid: string[];
  /** Why: each holder's region is in `avoid`. */
  holders: Holder[];
}

/** A rollout hold in the control bucket (`rollout.<model>.hold`). */
export interface RolloutHold {
  model: string;
  holders: Holder[];
}

/** Whether an action is a write that is lifted again when its alert resolves. */
export function isReversible(action: ActionType): boolean {
  return action === ActionType.ShiftTraffic || action === ActionType.HoldRollout;
}

/** Attempts at a compare-and-set update of a control key before the action counts as failed. */
const CAS_ATTEMPTS = 5;

/** The record of one action run. */
export interface ActionRecord {
  action: ActionType;
  /** `apply` when the alert fired (or is still firing past its cooldown), `lift` when it resolved. */
  phase: 'apply' | 'lift';
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
  /**
   * Lifts what a reversible `action` of `rule` on `subject` wrote, records it, and returns the
   * record. Never throws. Lifting what is not there succeeds and changes nothing.
   */
  lift(action: ActionType, rule: string, subject: Subject): Promise<ActionRecord>;
}

/** Creates a runner acting as `controllerId`. */
export function createActionRunner(
  nc: NatsConnection,
  js: JetStreamClient,
  control: KV,
  controllerId: string,
): ActionRunner {
  return new ActionRunnerImpl(nc, js, control, controllerId);
}

class ActionRunnerImpl implements ActionRunner {
  readonly #nc: NatsConnection;
  readonly #js: JetStreamClient;
  readonly #control: KV;
  readonly #controllerId: string;

  constructor(nc: NatsConnection, js: JetStreamClient, control: KV, controllerId: string) {
    this.#nc = nc;
    this.#js = js;
    this.#control = control;
    this.#controllerId = controllerId;
  }

  run(action: ActionType, rule: string, subject: Subject): Promise<ActionRecord> {
    return this.#record(action, 'apply', rule, subject, () => this.#perform(action, rule, subject));
  }

  lift(action: ActionType, rule: string, subject: Subject): Promise<ActionRecord> {
    return this.#record(action, 'lift', rule, subject, () => {
      if (!isReversible(action)) throw new Error(`${action} cannot be lifted`);
      return this.#setHolder(action, rule, subject, false);
    });
  }

  #perform(action: ActionType, rule: string, subject: Subject): Promise<Record<string, unknown>> {
    const reason = `rule ${rule}`;
    switch (action) {
      case ActionType.RestartActor:
        return this.#command(subject, HostCommandName.Restart, reason);
      case ActionType.DrainHost:
        return this.#command(subject, HostCommandName.Drain, reason);
      case ActionType.ShiftTraffic:
      case ActionType.HoldRollout:
        return this.#setHolder(action, rule, subject, true);
    }
  }

  /** Asks the subject's host to carry out `name`; throws unless it answers that it did. */
  async #command(
    subject: Subject,
    name: HostCommandName,
    reason: string,
  ): Promise<Record<string, unknown>> {
    if (!subject.host) throw new Error('the subject names no host');
    const body: HostCommand = { reason, ...(subject.model ? { model: subject.model } : {}) };
    const reply = await this.#nc.request(
      subjects.hostCommand(subject.region, subject.host, name),
      JSON.stringify(body),
      { timeout: COMMAND_TIMEOUT_MS },
    );
    const answer = hostCommandReplySchema.safeParse(reply.json());
    if (!answer.success) throw new Error('the host answered with an unreadable reply');
    if (!answer.data.ok) throw new Error(answer.data.error);
    return answer.data;
  }

  /**
   * Adds (or, with `hold` false, removes) the holder of `rule` on `subject` in the control key of
   * a reversible action, by compare-and-set, again on a conflict with a concurrent writer. An
   * alert's holder is replaced, never doubled; the key is deleted with its last holder.
   */
  async #setHolder(
    action: ActionType,
    rule: string,
    subject: Subject,
    hold: boolean,
  ): Promise<Record<string, unknown>> {
    const model = subject.model;
    if (!model) throw new Error('the subject names no model');
    const control = this.#control;
    const key =
      action === ActionType.ShiftTraffic ? routeOverrideKey(model) : rolloutHoldKey(model);
    for (let attempt = 1; ; attempt++) {
      const entry = await control.get(key);
      const stored = entry?.operation === 'PUT' ? readHolders(entry.string()) : [];
      const holders = stored.filter((h) => !(h.rule === rule && h.subject === subject.key));
      if (hold) holders.push(this.#holder(rule, subject));
      try {
        if (holders.length === 0) {
          if (entry?.operation === 'PUT')
            await control.delete(key, { previousSeq: entry.revision });
          return { key, deleted: entry?.operation === 'PUT' };
        }
        const value = controlValue(action, model, holders);
        const data = JSON.stringify(value);
        const revision =
          entry === null
            ? await control.create(key, data)
            : await control.update(key, data, entry.revision);
        return { key, revision, ...value };
      } catch (err) {
        if (attempt >= CAS_ATTEMPTS) throw err;
      }
    }
  }

  /** This controller's alert of `rule` on `subject`, as a holder written now. */
  #holder(rule: string, subject: Subject): Holder {
    return {
      rule,
      subject: subject.key,
      region: subject.region,
      by: this.#controllerId,
      at: Date.now(),
    };
  }

  /** Runs `work` and appends its record to the control log; a failed work is a record too. */
  async #record(
    action: ActionType,
    phase: ActionRecord['phase'],
    rule: string,
    subject: Subject,
    work: () => Promise<Record<string, unknown>>,
  ): Promise<ActionRecord> {
    const startedAt = Date.now();
    let ok = true;
    let detail: Record<string, unknown>;
    try {
      detail = await work();
    } catch (err) {
      ok = false;
      detail = { error: err instanceof Error ? err.message : String(err) };
    }
    const done: ActionRecord = {
      action,
      phase,
      rule,
      subject,
      ok,
      detail,
      controllerId: this.#controllerId,
      startedAt,
      finishedAt: Date.now(),
    };
    try {
      await this.#js.publish(subjects.actionLog(rule), JSON.stringify(done));
    } catch (err) {
      done.detail = { ...done.detail, recordError: (err as Error).message };
    }
    return done;
  }
}

/** The value of a reversible action's control key: who holds it, and for an override, where from. */
function controlValue(
  action: ActionType,
  model: string,
  holders: Holder[],
): RouteOverride | RolloutHold {
  return action === ActionType.ShiftTraffic
    ? { model, avoid: [...new Set(holders.map((h) => h.region))], holders }
    : { model, holders };
}

/**
 * The holders in a stored override or hold. An entry written before holders existed (or by hand)
 * has none that can be told apart: it is replaced by the next write.
 */
function readHolders(text: string): Holder[] {
  try {
    const value = JSON.parse(text) as { holders?: unknown };
    if (!Array.isArray(value.holders)) return [];
    return value.holders.filter(
      (h): h is Holder =>
        typeof h === 'object' &&
        h !== null &&
        typeof (h as Holder).rule === 'string' &&
        typeof (h as Holder).subject === 'string' &&
        typeof (h as Holder).region === 'string',
    );
  } catch {
    return [];
  }
}
