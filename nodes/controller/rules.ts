/**
 * Alert rules: what they may say, how a rules file is read and checked, and how one condition is
 * judged against one observed value. A file that does not parse fails the controller at start-up
 * with a `ConfigError` naming the rule and the field, never at the first evaluation.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { NAME_TOKEN } from '../../protocol/index.js';
import { ConfigError } from '../common/index.js';

/** What a metric describes: one actor (a heartbeat), one model's queue in a region, a region. */
export const Scope = {
  Actor: 'actor',
  Model: 'model',
  Region: 'region',
} as const;

/** One of the {@link Scope} values. */
export type Scope = (typeof Scope)[keyof typeof Scope];

/**
 * Every metric a rule can watch, its scope and the type of its value. Heartbeat metrics come from
 * the region's actors bucket, queue metrics from the model's JetStream consumer, dead-letter
 * metrics from the region's dead-letter stream.
 */
export const METRICS = {
  /** The actor's last beat is older than two of its intervals, or its beat expired. */
  'heartbeat.stale': { scope: Scope.Actor, type: 'boolean' },
  /**
   * Tasks in flight and no task finished for more than two heartbeat intervals (a busy actor that
   * finishes tasks is never stuck, however long it stays busy).
   */
  'heartbeat.stuck': { scope: Scope.Actor, type: 'boolean' },
  /** How long the actor has had tasks in flight without finishing one, ms (0 when idle). */
  'heartbeat.stalled-ms': { scope: Scope.Actor, type: 'number' },
  'heartbeat.in-flight': { scope: Scope.Actor, type: 'number' },
  'heartbeat.errors': { scope: Scope.Actor, type: 'number' },
  'heartbeat.restarts': { scope: Scope.Actor, type: 'number' },
  'heartbeat.latency-p99-ms': { scope: Scope.Actor, type: 'number' },
  /** `closed`, `open` or `half-open`. */
  'heartbeat.breaker': { scope: Scope.Actor, type: 'string' },
  /** `starting`, `running`, `restarting`, `draining` or `failed`. */
  'heartbeat.state': { scope: Scope.Actor, type: 'string' },
  /** Requests waiting for an actor (the consumer's pending count). */
  'queue.depth': { scope: Scope.Model, type: 'number' },
  /** Deliveries not yet acknowledged. */
  'queue.ack-pending': { scope: Scope.Model, type: 'number' },
  /** Messages delivered more than once and not yet acknowledged. */
  'queue.redelivered': { scope: Scope.Model, type: 'number' },
  /** Dead letters written per minute, over the last evaluation interval. */
  'dead-letters.rate': { scope: Scope.Region, type: 'number' },
  /** Dead letters kept in the region's stream. */
  'dead-letters.count': { scope: Scope.Region, type: 'number' },
} as const;

/** The name of a metric. */
export type MetricName = keyof typeof METRICS;

/** A metric's value at one evaluation. */
export type MetricValue = number | boolean | string;

/** Comparison operators of a condition. */
export const OPERATORS = ['>', '>=', '<', '<=', '==', '!='] as const;

/** One of {@link OPERATORS}. */
export type Operator = (typeof OPERATORS)[number];

/** Recovery actions, and the scope each needs to know what to act on. */
export const ActionType = {
  /** The actor's host restarts that model's executor. */
  RestartActor: 'restart-actor',
  /** The actor's host drains and exits, as on SIGTERM. */
  DrainHost: 'drain-host',
  /** Gateways send the model's new work to other regions first (`route.<model>`). */
  ShiftTraffic: 'shift-traffic',
  /** Rollouts of the model are held (`rollout.<model>.hold`). */
  HoldRollout: 'hold-rollout',
} as const;

/** One of the {@link ActionType} values. */
export type ActionType = (typeof ActionType)[keyof typeof ActionType];

const ACTION_SCOPES: Record<ActionType, readonly Scope[]> = {
  [ActionType.RestartActor]: [Scope.Actor],
  [ActionType.DrainHost]: [Scope.Actor],
  [ActionType.ShiftTraffic]: [Scope.Actor, Scope.Model],
  [ActionType.HoldRollout]: [Scope.Actor, Scope.Model],
};

/** Severities, most urgent first; they are subject tokens of `vigil.alert.<severity>.<rule>`. */
export const SEVERITIES = ['critical', 'warning', 'info'] as const;

/** One of {@link SEVERITIES}. */
export type Severity = (typeof SEVERITIES)[number];

/** Least time between two runs of one rule's action on one subject, unless the rule says, ms. */
export const DEFAULT_ACTION_COOLDOWN_MS = 5 * 60_000;

const ruleSchema = z
  .object({
    /** Subject token of the alert and key token of its state: lower-case name token. */
    name: z.string().regex(NAME_TOKEN, 'must be 1-64 lower-case letters, digits, - or _'),
    description: z.string().max(1024).optional(),
    when: z
      .object({
        metric: z.enum(Object.keys(METRICS) as [MetricName, ...MetricName[]]),
        op: z.enum(OPERATORS).optional(),
        value: z.union([z.number(), z.boolean(), z.string()]).optional(),
      })
      .strict(),
    /** How long the condition must hold before the alert fires, ms. */
    forMs: z.number().int().nonnegative(),
    severity: z.enum(SEVERITIES),
    action: z
      .object({
        type: z.enum([
          ActionType.RestartActor,
          ActionType.DrainHost,
          ActionType.ShiftTraffic,
          ActionType.HoldRollout,
        ]),
      })
      .strict()
      .optional(),
    /** Least time between two runs of the action on one subject, ms. */
    cooldownMs: z.number().int().nonnegative().optional(),
    /**
     * How long the condition must stay clear before the alert resolves, ms (Prometheus's
     * `keep_firing_for`). A reversible action is lifted on resolve, and its own effect often
     * clears the condition (work shifted away drains the queue): this is the hysteresis.
     */
    keepFiringForMs: z.number().int().nonnegative().optional(),
  })
  .strict();

const rulesFileSchema = z.object({ rules: z.array(z.unknown()) }).strict();

/** A checked rule, with its defaults filled in. */
export interface AlertRule {
  name: string;
  description?: string;
  metric: MetricName;
  scope: Scope;
  op: Operator;
  value: MetricValue;
  forMs: number;
  severity: Severity;
  action?: ActionType;
  cooldownMs: number;
  keepFiringForMs: number;
}

/** Parses the text of a rules file (JSON). `source` names it in errors. */
export function parseRules(text: string, source: string): AlertRule[] {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${source} is not valid JSON: ${(err as Error).message}`);
  }
  const file = rulesFileSchema.safeParse(raw);
  if (!file.success) {
    throw new ConfigError(`${source}: ${issueText(file.error.issues[0], '')}`);
  }
  const rules = file.data.rules.map((entry, i) => parseRule(entry, `${source}: rules[${i}]`));
  const seen = new Set<string>();
  for (const rule of rules) {
    if (seen.has(rule.name)) {
      throw new ConfigError(`${source}: rule '${rule.name}' is defined twice`);
    }
    seen.add(rule.name);
  }
  return rules;
}

/** Reads and parses the rules file at `path`. */
export function loadRules(path: string): AlertRule[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read alert rules ${path}: ${(err as Error).message}`);
  }
  return parseRules(text, path);
}

function issueText(issue: z.core.$ZodIssue | undefined, prefix: string): string {
  if (!issue) return 'is invalid';
  const path = [prefix, ...issue.path.map(String)].filter((p) => p !== '').join('.');
  return path === '' ? issue.message : `${path}: ${issue.message}`;
}

function parseRule(entry: unknown, where: string): AlertRule {
  const name =
    typeof entry === 'object' &&
    entry !== null &&
    typeof (entry as { name?: unknown }).name === 'string'
      ? (entry as { name: string }).name
      : undefined;
  const label = name === undefined ? where : `${where} ('${name}')`;
  const parsed = ruleSchema.safeParse(entry);
  if (!parsed.success) throw new ConfigError(`${label}: ${issueText(parsed.error.issues[0], '')}`);
  const r = parsed.data;
  const metric = METRICS[r.when.metric];
  const fail = (field: string, message: string): never => {
    throw new ConfigError(`${label}: ${field}: ${message}`);
  };
  const op: Operator = r.when.op ?? '==';
  let value: MetricValue;
  if (metric.type === 'boolean') {
    value = r.when.value ?? true;
    if (typeof value !== 'boolean') fail('when.value', `${r.when.metric} is true or false`);
    if (op !== '==' && op !== '!=') fail('when.op', `${r.when.metric} compares with == or !=`);
  } else if (r.when.value === undefined) {
    return fail('when.value', `${r.when.metric} needs a value to compare with`);
  } else {
    value = r.when.value;
    if (typeof value !== metric.type) fail('when.value', `${r.when.metric} is a ${metric.type}`);
    if (metric.type === 'string' && op !== '==' && op !== '!=') {
      fail('when.op', `${r.when.metric} compares with == or !=`);
    }
    if (r.when.op === undefined) fail('when.op', `${r.when.metric} needs an operator`);
  }
  if (r.action && !ACTION_SCOPES[r.action.type].includes(metric.scope)) {
    fail(
      'action.type',
      `${r.action.type} acts on ${ACTION_SCOPES[r.action.type].join(' or ')}, ` +
        `but ${r.when.metric} describes a ${metric.scope}`,
    );
  }
  return {
    name: r.name,
    ...(r.description === undefined ? {} : { description: r.description }),
    metric: r.when.metric,
    scope: metric.scope,
    op,
    value,
    forMs: r.forMs,
    severity: r.severity,
    ...(r.action ? { action: r.action.type } : {}),
    cooldownMs: r.cooldownMs ?? DEFAULT_ACTION_COOLDOWN_MS,
    keepFiringForMs: r.keepFiringForMs ?? 0,
  };
}

/** True when `observed op threshold` holds. Values of different types never match. */
export function conditionHolds(
  observed: MetricValue,
  op: Operator,
  threshold: MetricValue,
): boolean {
  if (op === '==') return observed === threshold;
  if (op === '!=') return observed !== threshold;
  if (typeof observed !== 'number' || typeof threshold !== 'number') return false;
  switch (op) {
    case '>':
      return observed > threshold;
    case '>=':
      return observed >= threshold;
    case '<':
      return observed < threshold;
    case '<=':
      return observed <= threshold;
  }
}
