/** What `npm run chaos` accepts: flags only (it reads no variables of its own). */
import { join, resolve } from 'node:path';
import {
  readFlags,
  decimal,
  flag,
  flagOf,
  humanDuration,
  int,
  nodeConfig,
  renderHelp,
  text,
} from '../../nodes/common/index.js';
import { PROJECT_ROOT } from '../../nodes/launcher/index.js';

const FLAG_VALUES = {
  tasks: int({
    name: '--tasks',
    min: 10,
    max: 1_000_000,
    default: 10_000,
    meaning: 'Tasks submitted (echo, ngram-chat and hash-embed in turn).',
  }),
  kills: int({
    name: '--kills',
    min: 0,
    max: 100_000,
    default: 200,
    meaning: 'SIGKILLs of executors and actor hosts, spread evenly over the load.',
  }),
  rate: int({
    name: '--rate',
    min: 1,
    max: 1_000,
    default: 30,
    meaning: 'Submissions per second.',
  }),
  hosts: int({ name: '--hosts', min: 2, max: 8, default: 3, meaning: 'Actor hosts.' }),
  hostShare: decimal({
    name: '--host-share',
    min: 0,
    max: 1,
    default: 0.2,
    meaning: 'Share of the kills that take a whole actor host rather than one executor.',
  }),
  syncShare: decimal({
    name: '--sync-share',
    min: 0,
    max: 1,
    default: 0.5,
    meaning: 'Share of the tasks submitted synchronously (`Prefer: wait=10`); the rest async.',
  }),
  settle: humanDuration({
    name: '--settle',
    min: 10_000,
    max: 3_600_000,
    default: 300_000,
    defaultText: '`5m`',
    meaning: 'How long every accepted task may take to become final after the load.',
  }),
  tsx: flag({
    name: '--tsx',
    default: false,
    meaning: 'Run the nodes as TypeScript through tsx instead of `dist/`.',
  }),
  report: text({
    name: '--report',
    type: 'directory path',
    defaultText: '`.vigil/chaos`',
    meaning: 'Where the run writes `<timestamp>-chaos.json` and `.md`, and the nodes their logs.',
  }),
};

/** Everything `npm run chaos` accepts. */
export const CHAOS_CONFIG = nodeConfig({
  node: 'chaos',
  title: 'Chaos run (`npm run chaos`)',
  usage: 'npm run chaos -- [flags]',
  summary:
    'A steady keyed load of mixed tasks (sync and async; echo, chat, embeddings) against a ' +
    'local edge of its own, while model executors (child processes) and whole actor hosts are ' +
    'SIGKILLed. Prints and saves lost, duplicated, re-run, restart times and the time until every ' +
    'task is final; exits 0 when nothing accepted was lost or duplicated, 1 otherwise, 2 on bad ' +
    'flags.',
  flags: Object.values(FLAG_VALUES).map((setting) => flagOf(setting, 'value')),
  groups: {},
});

/** A chaos run, as asked for. */
export interface ChaosOptions {
  tasks: number;
  kills: number;
  rate: number;
  hosts: number;
  hostShare: number;
  syncShare: number;
  settleMs: number;
  compiled: boolean;
  reportDir: string;
}

/**
 * Reads the command line.
 * @throws ConfigError naming the flag that is wrong (the run exits 2).
 */
export function readChaosArgs(
  argv: readonly string[],
): { type: 'help'; text: string } | { type: 'run'; options: ChaosOptions } {
  const read = readFlags(FLAG_VALUES, argv);
  if (read.help) return { type: 'help', text: renderHelp(CHAOS_CONFIG) };
  const f = read.values;
  return {
    type: 'run',
    options: {
      tasks: f.tasks,
      kills: f.kills,
      rate: f.rate,
      hosts: f.hosts,
      hostShare: f.hostShare,
      syncShare: f.syncShare,
      settleMs: f.settle,
      compiled: !f.tsx,
      reportDir: resolve(f.report ?? join(PROJECT_ROOT, '.vigil', 'chaos')),
    },
  };
}
