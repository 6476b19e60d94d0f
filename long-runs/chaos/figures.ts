/**
 * The chaos run's figures and verdict: tasks by class (ok, lost, duplicated, unexpected, never
 * accepted), re-runs (tasks whose stored outcome came from a later attempt than the first),
 * restart times of executors and hosts (p50, p99, max), and how long after the last kill, and
 * after the end of the load, the last task became final (its record's `finished_at`). The run
 * passes when nothing accepted was lost or duplicated.
 */
import { markdownTable, percentile } from '../common/index.js';
import type { ChaosOptions } from './config.js';
import type { KillRecord } from './killer.js';
import type { ChaosResult } from './run.js';
import type { Verdict } from './tasks.js';

/** Restart-time figures, ms. */
export interface RestartFigures {
  kills: number;
  recovered: number;
  p50?: number;
  p99?: number;
  max?: number;
}

/** The run's figures. */
export interface ChaosFigures {
  passed: boolean;
  tasks: number;
  accepted: number;
  neverAccepted: number;
  byVerdict: Record<Verdict, number>;
  examples: string[];
  /** Tasks whose outcome was stored by attempt 2 or later, and the extra attempts in all. */
  reRuns: { tasks: number; extraAttempts: number; maxAttempts: number };
  sends: { total: number; retried: number };
  executors: RestartFigures;
  hostsReady: RestartFigures;
  hostsActors: RestartFigures;
  /** ms from the last kill (and from the end of the load) until the last task was final. */
  lastKillToAllFinalMs?: number;
  loadEndToAllFinalMs?: number;
  loadSeconds: number;
  pidsSeen: number;
  leftAlive: number[];
  undecodableEvents: number;
}

function restartFigures(kills: readonly KillRecord[], pick: (k: KillRecord) => number | undefined) {
  const times = kills.flatMap((k) => (pick(k) === undefined ? [] : [pick(k)!]));
  const out: RestartFigures = { kills: kills.length, recovered: times.length };
  if (times.length > 0) {
    out.p50 = percentile(times, 0.5)!;
    out.p99 = percentile(times, 0.99)!;
    out.max = Math.max(...times);
  }
  return out;
}

/** Judges a run. */
export function chaosFigures(result: ChaosResult): ChaosFigures {
  const { ledger, kills } = result;
  const byVerdict: Record<Verdict, number> = { ok: 0, lost: 0, duplicated: 0, unexpected: 0 };
  const examples: string[] = [];
  let accepted = 0;
  let lastFinal = 0;
  const reRuns = { tasks: 0, extraAttempts: 0, maxAttempts: 0 };
  for (const task of ledger.tasks) {
    if (!task.accepted) continue;
    accepted++;
    const { verdict, why } = ledger.classify(task);
    byVerdict[verdict]++;
    if (verdict !== 'ok' && examples.length < 10)
      examples.push(`${task.key} (${task.model}, ${[...task.ids].join(',')}): ${verdict}: ${why}`);
    const attempts = Number(task.final?.['attempts'] ?? 0);
    if (attempts > 1) {
      reRuns.tasks++;
      reRuns.extraAttempts += attempts - 1;
    }
    reRuns.maxAttempts = Math.max(reRuns.maxAttempts, attempts);
    const finishedAt = task.final?.['finished_at'];
    const finished = typeof finishedAt === 'string' ? Date.parse(finishedAt) : NaN;
    if (Number.isFinite(finished)) lastFinal = Math.max(lastFinal, finished);
  }
  const lastKill = Math.max(0, ...kills.map((k) => k.killedAt));
  const executors = kills.filter((k) => k.kind === 'executor');
  const hosts = kills.filter((k) => k.kind === 'host');
  const allFinal = byVerdict.lost === 0 && lastFinal > 0;
  const sends = ledger.tasks.reduce((s, t) => s + t.answers.length, 0);
  return {
    passed: byVerdict.lost === 0 && byVerdict.duplicated === 0,
    tasks: ledger.tasks.length,
    accepted,
    neverAccepted: ledger.tasks.length - accepted,
    byVerdict,
    examples,
    reRuns,
    sends: { total: sends, retried: sends - ledger.tasks.length },
    executors: restartFigures(executors, (k) => k.restartMs),
    hostsReady: restartFigures(hosts, (k) => k.restartMs),
    hostsActors: restartFigures(hosts, (k) => k.actorsMs),
    ...(allFinal && lastKill > 0
      ? { lastKillToAllFinalMs: Math.max(0, lastFinal - lastKill) }
      : {}),
    ...(allFinal ? { loadEndToAllFinalMs: Math.max(0, lastFinal - result.loadEndedAt) } : {}),
    loadSeconds: Math.round((result.loadEndedAt - result.loadStartedAt) / 1000),
    pidsSeen: result.pids,
    leftAlive: result.leftAlive,
    undecodableEvents: ledger.undecodableEvents,
  };
}

const ms = (r: RestartFigures) => (r.p50 === undefined ? '-' : `${r.p50} / ${r.p99} / ${r.max}`);

/** What the run was, for the header. */
export interface ChaosFacts {
  commit: string;
  startedAt: string;
  runtime: string;
  machine: string;
  load: { before: number[]; after: number[] };
}

/** The report, in markdown. */
export function chaosMarkdown(facts: ChaosFacts, o: ChaosOptions, f: ChaosFigures): string {
  const v = f.byVerdict;
  return [
    `# Chaos ${f.passed ? 'PASSED' : 'FAILED'}: ${f.tasks} tasks, ${f.executors.kills + f.hostsReady.kills} kills`,
    '',
    `Commit ${facts.commit}, started ${facts.startedAt}; ${facts.runtime}; ${facts.machine}; ` +
      `load average before ${facts.load.before.join(' ')}, after ${facts.load.after.join(' ')}.`,
    `${o.hosts} actor hosts, models in child processes; ${o.rate} tasks/s for ${f.loadSeconds} s ` +
      `(${Math.round(o.syncShare * 100)} % sync); ${Math.round(o.hostShare * 100)} % of kills take a whole host.`,
    '',
    markdownTable(
      ['figure', 'value'],
      [
        ['tasks accepted', `${f.accepted} of ${f.tasks} (${f.neverAccepted} never accepted)`],
        ['ok', v.ok],
        ['**lost**', `**${v.lost}**`],
        ['**duplicated outcomes**', `**${v.duplicated}**`],
        ['unexpected', v.unexpected],
        [
          're-runs (outcome from attempt 2+)',
          `${f.reRuns.tasks} tasks, ${f.reRuns.extraAttempts} extra attempts, most ${f.reRuns.maxAttempts}`,
        ],
        ['HTTP sends (retried with the same key)', `${f.sends.total} (${f.sends.retried})`],
        [
          'executor kills: restart p50 / p99 / max ms',
          `${f.executors.kills}: ${ms(f.executors)} (${f.executors.recovered} seen back)`,
        ],
        ['host kills: ready p50 / p99 / max ms', `${f.hostsReady.kills}: ${ms(f.hostsReady)}`],
        ['host kills: every model running p50 / p99 / max ms', ms(f.hostsActors)],
        [
          'last kill -> every task final',
          f.lastKillToAllFinalMs === undefined ? '-' : `${f.lastKillToAllFinalMs} ms`,
        ],
        [
          'end of load -> every task final',
          f.loadEndToAllFinalMs === undefined ? '-' : `${f.loadEndToAllFinalMs} ms`,
        ],
        ['processes left alive after the stop', `${f.leftAlive.length} of ${f.pidsSeen}`],
      ],
    ),
    ...(f.examples.length > 0 ? ['Not ok:', '', ...f.examples.map((e) => `- ${e}`), ''] : []),
  ].join('\n');
}
