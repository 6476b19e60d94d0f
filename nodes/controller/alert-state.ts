/**
 * What the controller keeps of each (rule, subject) it watches: in memory while the condition
 * holds or clears, and in the control bucket (`alert.<rule>.<subject>`) while the alert fires, so
 * that a controller taking over neither fires it again nor repeats its action.
 */
import type { ActionRecord } from './actions.js';
import type { Subject } from './observe.js';
import type { AlertRule, MetricValue } from './rules.js';

/** One (rule, subject) pair being watched. */
export interface RuleState {
  rule: AlertRule;
  subject: Subject;
  /** When the condition started to hold (epoch ms), while it holds. */
  pendingSince?: number;
  /** When the condition of a firing alert stopped holding (epoch ms), until it resolves. */
  clearSince?: number;
  firing: boolean;
  /** Its record in the control bucket, while firing. */
  stored?: StoredAlert;
  lastValue: MetricValue | null;
}

/** A firing alert as kept in the control bucket. */
export interface StoredAlert {
  rule: string;
  subject: Subject;
  since: number;
  firedAt: number;
  by: string;
  lastAction?: Pick<ActionRecord, 'action' | 'ok' | 'controllerId' | 'finishedAt'>;
}

/** The control-bucket key of a firing alert. */
export function alertKey(rule: string, subject: Subject): string {
  return `alert.${rule}.${subject.key}`;
}

/** A stored alert, or undefined when the text is not one (written by another version). */
export function readStoredAlert(text: string): StoredAlert | undefined {
  try {
    const value = JSON.parse(text) as Partial<StoredAlert>;
    const ok =
      typeof value.rule === 'string' &&
      typeof value.since === 'number' &&
      typeof value.subject?.key === 'string' &&
      typeof value.subject.scope === 'string';
    return ok ? (value as StoredAlert) : undefined;
  } catch {
    return undefined;
  }
}
