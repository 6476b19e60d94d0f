/**
 * `npm run chaos -- [--tasks 10000] [--kills 200] [--rate 30] [--hosts 3] [--host-share 0.2]
 * [--sync-share 0.5] [--settle 5m] [--tsx] [--report dir]` (`config.ts`; `--help` lists them):
 * a steady keyed load of mixed tasks against a local edge of its own while executors and actor
 * hosts are SIGKILLed (`run.ts`). It stops by itself, stops every process it started (by PID),
 * prints the figures and writes `<report>/<timestamp>-chaos.json` and `.md` (default
 * `.vigil/chaos`). Exits 0 when nothing accepted was lost or duplicated, 1 otherwise, 2 on bad
 * flags. Ctrl-C stops it all.
 */
import { availableParallelism, cpus, loadavg } from 'node:os';
import { gitDescribe, runLongRun, writeReport, type RunContext } from '../common/index.js';
import { CHAOS_CONFIG, readChaosArgs, type ChaosOptions } from './config.js';
import { chaosFigures, chaosMarkdown, type ChaosFacts } from './figures.js';
import { chaosLogDir, runChaos } from './run.js';

/** Past the load and settle time, what start-up, recovery and shutdown may take. */
const OVERHEAD_BUDGET_MS = 600_000;

const load = () => loadavg().map((v) => Math.round(v * 100) / 100);

async function chaos(o: ChaosOptions, { stamp, say, started }: RunContext): Promise<number> {
  const facts: ChaosFacts = {
    commit: gitDescribe(),
    startedAt: new Date().toISOString(),
    runtime: o.compiled ? 'nodes compiled (`dist/`)' : 'nodes through tsx',
    machine: `${availableParallelism()} cores (${cpus()[0]?.model ?? 'unknown CPU'})`,
    load: { before: load(), after: [] },
  };
  say(
    `chaos: ${o.tasks} tasks at ${o.rate}/s, ${o.kills} kills, ${o.hosts} hosts; commit ${facts.commit}; ` +
      `load average ${facts.load.before.join(' ')}`,
  );
  const result = await runChaos(o, chaosLogDir(o.reportDir, stamp), say, (topology) =>
    started(() => topology.stop()),
  );
  facts.load.after = load();
  const figures = chaosFigures(result);
  const markdown = chaosMarkdown(facts, o, figures);
  const kills = result.kills;
  const base = writeReport(o.reportDir, 'chaos', { facts, options: o, figures, kills }, markdown);
  say('\n' + markdown);
  say(`chaos: report ${base}.json and .md`);
  return figures.passed ? 0 : 1;
}

runLongRun({
  name: 'chaos',
  usage: CHAOS_CONFIG.usage,
  readArgs: readChaosArgs,
  budgetMs: (o) => 3 * ((o.tasks / o.rate) * 1000) + o.settleMs + OVERHEAD_BUDGET_MS,
  run: chaos,
});
