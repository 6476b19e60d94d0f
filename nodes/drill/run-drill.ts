/**
 * One drill: start an isolated topology, run the load, inject the fault at a third of the load,
 * repair what only an operator repairs at two thirds, let every accepted task settle, stop every
 * process, and measure RTO and RPO from what the client saw.
 */
import type { RegionSpec } from '../launcher/index.js';
import type { Fault, Injection } from './faults.js';
import { runLoad, settle, type LoadResult, type Sample, type SettleResult } from './load.js';
import { startDrillTopology, type DrillTopology, type RestartRecord } from './topology.js';

/** Options of {@link runDrill}. */
export interface DrillOptions {
  regions: readonly RegionSpec[];
  /** Load duration, ms. */
  durationMs: number;
  /** Async submissions per second. */
  rate: number;
  /** Longest RTO that passes, ms. */
  maxRtoMs: number;
  /** How long accepted tasks get to reach a final state after the load, ms. */
  settleMs: number;
  /** Where node logs go. */
  logDir: string;
  /** Called with the topology as soon as it runs (so Ctrl-C can stop it). */
  onTopology?: (topology: DrillTopology) => void;
}

/** The drill's report (also its JSON file). */
export interface DrillReport {
  fault: string;
  summary: string;
  passed: boolean;
  /** Why it did not pass, when it did not. */
  failures: string[];
  startedAt: string;
  topology: { regions: string[]; nodesPerRegion: number[] };
  settings: { durationMs: number; rate: number; maxRtoMs: number; settleMs: number };
  target: string;
  faultAtMs: number;
  rto: {
    /**
     * Fault to recovery: the first successful sync probe sent after the last failed one, at the
     * gateway that recovered first (a client fails over); null: none recovered.
     */
    ms: number | null;
    /** The same per gateway (region). */
    byGateway: Record<string, number | null>;
    /** Longest time without any successful request (probe or acceptance) from the fault on. */
    longestGapMs: number;
    /** Longest time without a successful sync probe from the fault on, per gateway. */
    longestProbeGapMs: Record<string, number>;
    /** Sync probe answers from the fault on, per gateway, by HTTP status (0: no answer). */
    probeStatusesAfterFault: Record<string, Record<string, number>>;
  };
  rpo: {
    accepted: number;
    /** Accepted and no final state within the settle time. */
    lost: number;
    lostKeys: string[];
    /** Two task ids for one key, or one task read with two different results. */
    twoOutcomes: number;
    succeeded: number;
    failedOrDead: number;
  };
  load: {
    submissionsSent: number;
    skippedAtClientBound: number;
    neverAccepted: number;
    probesSent: number;
    probesOk: number;
    refusedOrNoAnswer: number;
  };
  recovery: Record<string, unknown>;
  restarts: RestartRecord[];
  /** Every process the drill started (and executor pids it learned of). */
  pids: { role: string; pid: number }[];
  logDir: string;
}

/**
 * Fault to recovery at one gateway: to the first successful probe sent after the last probe that
 * failed (a probe sent right after the kill may still succeed before the fault bites, and a repair
 * may interrupt again); with no failure at all, to the first success. Null: none succeeded.
 */
function recoveryAfter(probes: readonly Sample[], faultAt: number): number | null {
  const after = probes.filter((s) => s.sentAt >= faultAt).sort((a, b) => a.sentAt - b.sentAt);
  const lastFailure = after.reduce((last, s) => (s.ok ? last : Math.max(last, s.sentAt)), -1);
  const ok = after.filter((s) => s.ok && s.sentAt > lastFailure);
  if (ok.length === 0) return null;
  return Math.min(...ok.map((s) => s.at)) - faultAt;
}

/** Probes in a row that must succeed for a gateway to count as serving again. */
const SERVING_AGAIN_PROBES = 3;

/** Did the last few probes answered by `region`'s gateway, all sent after the fault, succeed? */
function servingAgain(samples: readonly Sample[], region: string, faultAt: number): boolean {
  const last = samples
    .filter((s) => s.kind === 'probe' && s.region === region && s.sentAt >= faultAt)
    .slice(-SERVING_AGAIN_PROBES);
  return last.length === SERVING_AGAIN_PROBES && last.every((s) => s.ok);
}

/** Longest stretch without a success, counted from the last success before the fault. */
function longestGap(samples: readonly Sample[], faultAt: number, end: number): number {
  const times = samples
    .filter((s) => s.ok)
    .map((s) => s.at)
    .sort((a, b) => a - b);
  let previous = Math.max(...times.filter((t) => t < faultAt), -Infinity);
  if (previous === -Infinity) previous = faultAt;
  let gap = 0;
  for (const t of times.filter((t) => t >= faultAt)) {
    gap = Math.max(gap, t - previous);
    previous = t;
  }
  return Math.max(gap, end - previous);
}

/** Runs `fault` once; always stops what it started, also when it throws. */
export async function runDrill(fault: Fault, options: DrillOptions): Promise<DrillReport> {
  fault.check(options.regions);
  const startedAt = new Date();
  const topology = await startTopology(fault, options);
  options.onTopology?.(topology);
  try {
    const gateways = options.regions.map((r) => ({
      region: r.name,
      url: topology.gatewayUrl(r.name),
    }));
    const { load, struck } = await loadWithFault(fault, topology, gateways, options, startedAt);
    const settled = await settle(
      gateways,
      topology.apiKey,
      load.accepted,
      Date.now() + options.settleMs,
    );
    // The recovery figures are complete once the fault's watcher is done (recovered or timed out).
    await struck.injection?.watched;
    const rto = measureRto(load, gateways, struck.at);
    const rpo = measureRpo(load, settled);
    const failures = judge(rto.ms, settled, options);
    await topology.stop();
    return report({ fault, options, startedAt, topology, struck, load, rto, rpo, failures });
  } finally {
    await topology.stop();
  }
}

/** The drill's own edge, its actor hosts set up for what the fault needs. */
function startTopology(fault: Fault, options: DrillOptions): Promise<DrillTopology> {
  return startDrillTopology({
    regions: options.regions,
    actorEnv: {
      VIGIL_MODELS: 'echo',
      // A task whose host died is delivered again after the ack wait: 10 s keeps the settle short.
      VIGIL_ACK_WAIT_MS: '10000',
      ...fault.actorEnv,
    },
    logDir: options.logDir,
  });
}

/** When the fault struck (ms epoch; 0 until it has) and what it did. */
interface Struck {
  at: number;
  injection: Injection | undefined;
}

/** A gateway the load sends to, by region. */
type DrillGateway = { region: string; url: string };

/**
 * The steady load, with the fault injected at a third of it and repaired at two thirds; the
 * load goes on past its end while no gateway serves again, up to the RTO budget.
 */
async function loadWithFault(
  fault: Fault,
  topology: DrillTopology,
  gateways: readonly DrillGateway[],
  options: DrillOptions,
  startedAt: Date,
): Promise<{ load: LoadResult; struck: Struck }> {
  const struck: Struck = { at: 0, injection: undefined };
  const load = await runLoad(
    {
      gateways,
      apiKey: topology.apiKey,
      rate: options.rate,
      durationMs: options.durationMs,
      retryWindowMs: options.settleMs,
      runId: `drill-${startedAt.getTime().toString(36)}`,
      keepGoing: (samples) =>
        struck.at !== 0 && !gateways.some((g) => servingAgain(samples, g.region, struck.at)),
      maxExtraMs: options.maxRtoMs,
    },
    [
      {
        atMs: options.durationMs / 3,
        run: async () => {
          struck.at = Date.now();
          struck.injection = await fault.inject(topology, options.regions);
        },
      },
      {
        atMs: (options.durationMs * 2) / 3,
        run: async () => struck.injection?.repair?.(),
      },
    ],
  );
  return { load, struck };
}

/** RTO from the sync probes, per gateway and for a client that fails over between them. */
function measureRto(
  load: LoadResult,
  gateways: readonly DrillGateway[],
  faultAt: number,
): DrillReport['rto'] {
  const probes = load.samples.filter((s) => s.kind === 'probe');
  const byGateway: Record<string, number | null> = {};
  const probeGapByGateway: Record<string, number> = {};
  const statuses: Record<string, Record<string, number>> = {};
  for (const g of gateways) {
    const own = probes.filter((s) => s.region === g.region);
    const counts: Record<string, number> = {};
    for (const s of own) if (s.sentAt >= faultAt) counts[s.status] = (counts[s.status] ?? 0) + 1;
    statuses[g.region] = counts;
    byGateway[g.region] = recoveryAfter(own, faultAt);
    probeGapByGateway[g.region] = longestGap(own, faultAt, load.loadEnd);
  }
  // A client that fails over between gateways is served again as soon as one of them serves.
  const recovered = Object.values(byGateway).filter((ms): ms is number => ms !== null);
  return {
    ms: recovered.length > 0 ? Math.min(...recovered) : null,
    byGateway,
    longestGapMs: longestGap(load.samples, faultAt, load.loadEnd),
    longestProbeGapMs: probeGapByGateway,
    probeStatusesAfterFault: statuses,
  };
}

/** RPO: what became of every accepted task once the settle time was up. */
function measureRpo(load: LoadResult, settled: SettleResult): DrillReport['rpo'] {
  const states = [...settled.finalStates.values()];
  return {
    accepted: load.accepted.size,
    lost: settled.lost.length,
    lostKeys: settled.lost.slice(0, 20),
    twoOutcomes: settled.twoOutcomes.length,
    succeeded: states.filter((s) => s === 'succeeded').length,
    failedOrDead: states.filter((s) => s !== 'succeeded').length,
  };
}

/** Why the drill did not pass: no recovery or one over budget, a lost task, two outcomes. */
function judge(rtoMs: number | null, settled: SettleResult, options: DrillOptions): string[] {
  const failures: string[] = [];
  if (rtoMs === null) failures.push('no gateway served sync requests again after the fault');
  else if (rtoMs > options.maxRtoMs)
    failures.push(`RTO ${rtoMs} ms is over the budget of ${options.maxRtoMs} ms`);
  if (settled.lost.length > 0) failures.push(`${settled.lost.length} accepted task(s) lost`);
  if (settled.twoOutcomes.length > 0)
    failures.push(`${settled.twoOutcomes.length} task(s) with two outcomes`);
  return failures;
}

/** Everything {@link report} puts together. */
interface DrillOutcome {
  fault: Fault;
  options: DrillOptions;
  startedAt: Date;
  topology: DrillTopology;
  struck: Struck;
  load: LoadResult;
  rto: DrillReport['rto'];
  rpo: DrillReport['rpo'];
  failures: string[];
}

/** The report; made once the topology has stopped, so its pids include every restart. */
function report(outcome: DrillOutcome): DrillReport {
  const { fault, options, startedAt, topology, struck, load, rto, rpo, failures } = outcome;
  const probes = load.samples.filter((s) => s.kind === 'probe');
  return {
    fault: fault.name,
    summary: fault.summary,
    passed: failures.length === 0,
    failures,
    startedAt: startedAt.toISOString(),
    topology: {
      regions: options.regions.map((r) => r.name),
      nodesPerRegion: options.regions.map((r) => r.nodes),
    },
    settings: {
      durationMs: options.durationMs,
      rate: options.rate,
      maxRtoMs: options.maxRtoMs,
      settleMs: options.settleMs,
    },
    target: struck.injection?.target ?? 'not injected',
    faultAtMs: struck.at - startedAt.getTime(),
    rto,
    rpo,
    load: {
      submissionsSent: load.sent,
      skippedAtClientBound: load.skipped,
      neverAccepted: load.neverAccepted,
      probesSent: probes.length,
      probesOk: probes.filter((s) => s.ok).length,
      refusedOrNoAnswer: load.samples.filter((s) => !s.ok && s.status !== 202).length,
    },
    recovery: struck.injection?.recovery ?? {},
    restarts: [...topology.restarts],
    pids: topology.pids(),
    logDir: options.logDir,
  };
}

/** The report as a few lines of markdown (a table of the figures). */
export function markdownReport(report: DrillReport): string {
  const rows: [string, string][] = [
    ['fault', `${report.fault}: ${report.summary}`],
    ['result', report.passed ? 'passed' : `FAILED: ${report.failures.join('; ')}`],
    [
      'topology',
      report.topology.regions
        .map((r, i) => `${r} (${report.topology.nodesPerRegion[i]})`)
        .join(', '),
    ],
    ['target', report.target],
    [
      'RTO',
      report.rto.ms === null
        ? 'none'
        : `${report.rto.ms} ms (budget ${report.settings.maxRtoMs} ms)`,
    ],
    [
      'RTO by gateway',
      Object.entries(report.rto.byGateway)
        .map(([g, ms]) => `${g} ${ms === null ? 'none' : `${ms} ms`}`)
        .join(', '),
    ],
    ['longest gap', `${report.rto.longestGapMs} ms (any request)`],
    [
      'longest sync gap',
      Object.entries(report.rto.longestProbeGapMs)
        .map(([g, ms]) => `${g} ${ms} ms`)
        .join(', '),
    ],
    [
      'RPO',
      `${report.rpo.lost} lost of ${report.rpo.accepted} accepted, ${report.rpo.twoOutcomes} with two outcomes`,
    ],
    [
      'load',
      `${report.load.submissionsSent} submissions at ${report.settings.rate}/s, ` +
        `${report.load.probesOk}/${report.load.probesSent} probes ok, ` +
        `${report.load.refusedOrNoAnswer} refused or unanswered (retried), ${report.load.neverAccepted} never accepted`,
    ],
    [
      'recovery',
      Object.entries(report.recovery)
        .map(([k, v]) => `${k} ${String(v)}`)
        .join(', ') || '-',
    ],
    [
      'restarts',
      report.restarts.map((r) => `${r.label} ${r.readyAt - r.exitedAt} ms`).join(', ') || '-',
    ],
  ];
  return [
    `# Drill ${report.fault}, ${report.startedAt}`,
    '',
    '| | |',
    '|---|---|',
    ...rows.map(([k, v]) => `| ${k} | ${v.replace(/\|/g, '\\|')} |`),
    '',
  ].join('\n');
}
