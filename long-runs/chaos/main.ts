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
import { makeNamedDirectory } from '../../nodes/common/index.js';
import { gitDescribe, writeReport } from '../common/index.js';
import { CHAOS_CONFIG, readChaosArgs, type ChaosOptions } from './config.js';
import { chaosFigures, chaosMarkdown, type ChaosFacts } from './figures.js';
import { chaosLogDir, runChaos } from './run.js';
import type { ChaosTopology } from './topology.js';

/** Past the load and settle time, what start-up, recovery and shutdown may take. */
const OVERHEAD_BUDGET_MS = 600_000;

const say = (text: string): void => void process.stdout.write(text + '\n');
const load = () => loadavg().map((v) => Math.round(v * 100) / 100);

async function main(): Promise<number> {
  let o: ChaosOptions;
  try {
    const read = readChaosArgs(process.argv.slice(2));
    if (read.type === 'help') {
      process.stdout.write(read.text);
      return 0;
    }
    o = read.options;
    makeNamedDirectory('--report', o.reportDir);
  } catch (err) {
    say(`chaos: ${(err as Error).message}\nusage: ${CHAOS_CONFIG.usage} (--help lists the flags)`);
    return 2;
  }
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  let topology: ChaosTopology | undefined;
  const stopAndExit = (why: string, code: number) => {
    say(`chaos: ${why}; stopping every process it started`);
    void (topology?.stop() ?? Promise.resolve()).finally(() => process.exit(code));
  };
  process.once('SIGINT', () => stopAndExit('interrupted', 130));
  process.once('SIGTERM', () => stopAndExit('terminated', 143));
  const loadMs = (o.tasks / o.rate) * 1000;
  setTimeout(
    () => stopAndExit('over its time budget', 1),
    3 * loadMs + o.settleMs + OVERHEAD_BUDGET_MS,
  ).unref();
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
  let result;
  try {
    result = await runChaos(o, chaosLogDir(o.reportDir, stamp), say, (t) => (topology = t));
  } catch (err) {
    await topology?.stop();
    throw err;
  }
  facts.load.after = load();
  const figures = chaosFigures(result);
  const markdown = chaosMarkdown(facts, o, figures);
  const kills = result.kills;
  const base = writeReport(o.reportDir, 'chaos', { facts, options: o, figures, kills }, markdown);
  say('\n' + markdown);
  say(`chaos: report ${base}.json and .md`);
  return figures.passed ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    say(`chaos: ${(err as Error).stack ?? String(err)}`);
    process.exit(1);
  },
);
