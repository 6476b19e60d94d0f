/**
 * `npm run drill -- <fault>|all [--regions eu,us] [--nodes 3] [--duration 20s] [--rate 20]
 * [--max-rto 30s] [--settle 60s] [--report dir]` (`config.ts`; `--help` lists them): a
 * disaster-recovery drill on an isolated edge
 * of its own (a temp dir, random loopback ports; a running `npm start` and its `.vigil` are never
 * touched). It prints each drill's figures, writes `<report>/<timestamp>-<fault>.json` and `.md`
 * (default `.vigil/drills`), and exits 0 when every drill lost no accepted task, saw no task with
 * two outcomes, and served again within the RTO budget; 1 otherwise, 2 on bad arguments.
 * Ctrl-C stops every process the drill started.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkTopology, type RegionSpec } from '../launcher/index.js';
import { DRILL_CONFIG, readDrillArgs, type DrillOptions } from './config.js';
import { FAULTS } from './faults.js';
import { markdownReport, runDrill, type DrillReport } from './run-drill.js';
import type { DrillTopology } from './topology.js';
import { makeNamedDirectory } from '../common/index.js';

/** Past the load and settle time, what start-up and shutdown may take before the drill gives up. */
const OVERHEAD_BUDGET_MS = 180_000;

function say(text: string): void {
  process.stdout.write(text + '\n');
}

function printReport(report: DrillReport): void {
  const rows: [string, string][] = [
    ['target', report.target],
    ['RTO', report.rto.ms === null ? 'none' : `${report.rto.ms} ms`],
    [
      'RTO by gateway',
      Object.entries(report.rto.byGateway)
        .map(([g, ms]) => `${g}=${ms === null ? 'none' : ms}`)
        .join(' '),
    ],
    ['longest gap', `${report.rto.longestGapMs} ms (any request)`],
    [
      'longest sync gap',
      Object.entries(report.rto.longestProbeGapMs)
        .map(([g, ms]) => `${g}=${ms}`)
        .join(' '),
    ],
    ['accepted', String(report.rpo.accepted)],
    ['lost (RPO)', String(report.rpo.lost)],
    ['two outcomes', String(report.rpo.twoOutcomes)],
    ['probes ok', `${report.load.probesOk}/${report.load.probesSent}`],
    ['refused, retried', String(report.load.refusedOrNoAnswer)],
    ...Object.entries(report.recovery).map(([k, v]): [string, string] => [k, String(v)]),
    ...report.restarts.map((r): [string, string] => [
      `restart ${r.label}`,
      `${r.readyAt - r.exitedAt} ms (pid ${r.oldPid} -> ${r.newPid})`,
    ]),
    ['result', report.passed ? 'PASSED' : `FAILED: ${report.failures.join('; ')}`],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  say(`\n== drill ${report.fault}: ${report.summary}`);
  for (const [k, v] of rows) say(`  ${k.padEnd(width)}  ${v}`);
}

async function main(): Promise<number> {
  let cli: DrillOptions;
  try {
    const read = readDrillArgs(process.argv.slice(2));
    if (read.type === 'help') {
      process.stdout.write(read.text);
      return 0;
    }
    cli = read.options;
    makeNamedDirectory('--report', cli.reportDir);
  } catch (err) {
    say(`drill: ${(err as Error).message}\nusage: ${DRILL_CONFIG.usage} (--help lists the flags)`);
    return 2;
  }
  let running: DrillTopology | undefined;
  let interrupted = false;
  const onSignal = (): void => {
    if (interrupted) return;
    interrupted = true;
    say('\ndrill: interrupted; stopping every process it started');
    void (running?.stop() ?? Promise.resolve()).finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const budget = setTimeout(
    () => {
      say('drill: over its time budget; stopping every process it started');
      void (running?.stop() ?? Promise.resolve()).finally(() => process.exit(1));
    },
    cli.faults.length * (cli.durationMs + 2 * cli.settleMs + OVERHEAD_BUDGET_MS),
  );
  budget.unref();

  let allPassed = true;
  for (const name of cli.faults) {
    const fault = FAULTS.get(name)!;
    const regions: RegionSpec[] = (cli.regions ?? fault.defaultRegions).map((region) => ({
      name: region,
      nodes: cli.nodes ?? fault.defaultNodes,
    }));
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const base = join(cli.reportDir, `${stamp}-${name}`);
    try {
      checkTopology(regions);
      say(
        `drill ${name}: ${regions.map((r) => `${r.name}(${r.nodes})`).join(' ')}, ` +
          `${cli.durationMs / 1000} s of load at ${cli.rate}/s; fault at ${(cli.durationMs / 3000).toFixed(1)} s`,
      );
      const report = await runDrill(fault, {
        regions,
        durationMs: cli.durationMs,
        rate: cli.rate,
        maxRtoMs: cli.maxRtoMs,
        settleMs: cli.settleMs,
        logDir: `${base}-logs`,
        onTopology: (topology) => (running = topology),
      });
      running = undefined;
      writeFileSync(`${base}.json`, JSON.stringify(report, null, 2) + '\n');
      writeFileSync(`${base}.md`, markdownReport(report));
      printReport(report);
      say(`  report      ${base}.json`);
      allPassed &&= report.passed;
    } catch (err) {
      if (interrupted) break;
      allPassed = false;
      say(`drill ${name}: could not run: ${(err as Error).message}`);
    }
  }
  clearTimeout(budget);
  return allPassed ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    say(`drill: ${(err as Error).message}`);
    process.exit(1);
  },
);
