/** What `npm run soak` accepts: flags only (it reads no variables of its own). */
import { join, resolve } from 'node:path';
import {
  ConfigError,
  readFlags,
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
  duration: humanDuration({
    name: '--duration',
    min: 60_000,
    max: 24 * 3_600_000,
    default: 3_600_000,
    defaultText: '`60m`',
    meaning: 'How long the load runs.',
  }),
  warmup: humanDuration({
    name: '--warmup',
    min: 0,
    max: 3_600_000,
    defaultText: 'a third of the duration, at most `20m`',
    meaning:
      'The start of the run left out of the growth figures: caches, JIT and pools filling, ' +
      'and every V8 heap growing to its first major collection (the controller\u2019s comes ' +
      'at about 20 minutes at 30 requests per second).',
  }),
  rate: int({
    name: '--rate',
    min: 1,
    max: 500,
    default: 30,
    meaning: 'Requests per second, every route together.',
  }),
  sample: humanDuration({
    name: '--sample',
    min: 1_000,
    max: 600_000,
    default: 10_000,
    defaultText: '`10s`',
    meaning: 'How often every process is sampled.',
  }),
  taskRetention: humanDuration({
    name: '--task-retention',
    min: 60_000,
    max: 7 * 24 * 3_600_000,
    defaultText: 'provisioning\u2019s, `24h`',
    meaning:
      'TTL of task records: a shorter one shows where nats-server levels off within the run.',
  }),
  duplicateWindow: humanDuration({
    name: '--duplicate-window',
    min: 1_000,
    max: 24 * 3_600_000,
    defaultText: 'provisioning\u2019s, `15m`',
    meaning: "The request stream's duplicate window.",
  }),
  tsx: flag({
    name: '--tsx',
    default: false,
    meaning: 'Run the nodes as TypeScript through tsx (as `npm start` does) instead of `dist/`.',
  }),
  heapSnapshots: flag({
    name: '--heap-snapshots',
    default: false,
    meaning:
      'Write a V8 heap snapshot of every node at the end of warm-up and at the end ' +
      '(`--heapsnapshot-signal`), into the report dir.',
  }),
  judge: text({
    name: '--judge',
    type: 'file path',
    meaning:
      'Judge a saved run (its `<timestamp>-soak.json`) again instead of running one: prints ' +
      'its report with this `--warmup` (default: the rule above, on its duration).',
  }),
  report: text({
    name: '--report',
    type: 'directory path',
    defaultText: '`.vigil/soak`',
    meaning: 'Where the run writes `<timestamp>-soak.json` and `.md`, and the nodes their logs.',
  }),
};

/** Everything `npm run soak` accepts. */
export const SOAK_CONFIG = nodeConfig({
  node: 'soak',
  title: 'Soak run (`npm run soak`)',
  usage: 'npm run soak -- [flags]',
  summary:
    'A fixed-rate load across every route against a local edge (nats-server, actor host, ' +
    'gateway, controller, each its own process) for a long time, sampling the memory, heap, ' +
    'event-loop delay, descriptors and consumers of every process. Prints and saves the report; ' +
    'exits 0 when it passed (0 errors, RSS after warm-up within 10 % and 1 MiB per 10 minutes, ' +
    'event-loop p99 within 50 ms, descriptors and consumers flat), 1 otherwise, 2 on bad flags.',
  flags: Object.values(FLAG_VALUES).map((setting) => flagOf(setting, 'value')),
  groups: {},
});

/** A soak run, as asked for. */
export interface SoakOptions {
  durationMs: number;
  warmupMs: number;
  rate: number;
  sampleMs: number;
  taskRetentionMs?: number;
  duplicateWindowMs?: number;
  compiled: boolean;
  heapSnapshots: boolean;
  reportDir: string;
  /** A saved run to judge again instead of running (`--judge`), with `--warmup` if given. */
  judge?: { file: string; warmupMs?: number };
}

/** The default warm-up of a run of `durationMs`. */
export const defaultWarmupMs = (durationMs: number): number =>
  Math.min(20 * 60_000, Math.round(durationMs / 3));

/**
 * Reads the command line.
 * @throws ConfigError naming the flag that is wrong (the run exits 2).
 */
export function readSoakArgs(
  argv: readonly string[],
): { type: 'help'; text: string } | { type: 'run'; options: SoakOptions } {
  const read = readFlags(FLAG_VALUES, argv);
  if (read.help) return { type: 'help', text: renderHelp(SOAK_CONFIG) };
  const f = read.values;
  const durationMs = f.duration;
  const warmupMs = f.warmup ?? defaultWarmupMs(durationMs);
  if (warmupMs >= durationMs) throw new ConfigError('--warmup must be shorter than --duration');
  const taskRetentionMs = f.taskRetention;
  const duplicateWindowMs = f.duplicateWindow;
  return {
    type: 'run',
    options: {
      durationMs,
      warmupMs,
      rate: f.rate,
      sampleMs: f.sample,
      ...(taskRetentionMs === undefined ? {} : { taskRetentionMs }),
      ...(duplicateWindowMs === undefined ? {} : { duplicateWindowMs }),
      compiled: !f.tsx,
      heapSnapshots: f.heapSnapshots,
      ...(f.judge === undefined
        ? {}
        : {
            judge: {
              file: resolve(f.judge),
              ...(f.warmup === undefined ? {} : { warmupMs: f.warmup }),
            },
          }),
      reportDir: resolve(f.report ?? join(PROJECT_ROOT, '.vigil', 'soak')),
    },
  };
}
