/** What `npm run drill` accepts: a fault, and flags (it reads no variables of its own). */
import { join, resolve } from 'node:path';
import {
  ConfigError,
  readFlags,
  flagOf,
  humanDuration,
  int,
  names,
  nodeConfig,
  text,
  renderHelp,
} from '../common/index.js';
import { PROJECT_ROOT } from '../launcher/index.js';
import { ALL_FAULTS, type FaultName } from './faults.js';

/** The flags' values, each parsed (and named in errors) as its flag. */
const FLAG_VALUES = {
  regions: names({
    name: '--regions',
    defaultText: "the fault's own",
    meaning: "Regions of the drill's edge, nearest first.",
  }),
  nodes: int({
    name: '--nodes',
    min: 1,
    max: 5,
    defaultText: "the fault's own",
    meaning: 'nats-servers per region.',
  }),
  duration: humanDuration({
    name: '--duration',
    min: 3_000,
    max: 600_000,
    default: 20_000,
    defaultText: '`20s`',
    meaning: 'How long the load runs; the fault strikes a third of the way in.',
  }),
  rate: int({
    name: '--rate',
    min: 1,
    max: 200,
    default: 20,
    meaning: 'Requests per second of load.',
  }),
  maxRto: humanDuration({
    name: '--max-rto',
    default: 30_000,
    defaultText: '`30s`',
    meaning: 'The recovery time budget: a drill that serves again later fails.',
  }),
  settle: humanDuration({
    name: '--settle',
    default: 60_000,
    defaultText: '`60s`',
    meaning: 'How long every accepted task may take to finish after the load.',
  }),
  report: text({
    name: '--report',
    type: 'directory path',
    defaultText: '`.vigil/drills`',
    meaning: 'Where each drill writes `<timestamp>-<fault>.json` and `.md`.',
  }),
};

/** Everything `npm run drill` accepts. */
export const DRILL_CONFIG = nodeConfig({
  node: 'drill',
  title: 'Drill runner (`npm run drill`)',
  usage: `npm run drill -- <${ALL_FAULTS.join('|')}|all> [flags]`,
  summary:
    'Disaster-recovery drills, each on an isolated edge of its own (a temp dir, random loopback ' +
    'ports; a running `npm start` is never touched): it strikes the fault under load and ' +
    'measures RTO and RPO. Exits 0 when every drill lost no accepted task, gave no task two ' +
    'outcomes and served again within the RTO budget; 1 otherwise; 2 on bad arguments.',
  flags: [
    flagOf(FLAG_VALUES.regions, 'a,b'),
    flagOf(FLAG_VALUES.nodes, 'n'),
    flagOf(FLAG_VALUES.duration, 'time'),
    flagOf(FLAG_VALUES.rate, 'per second'),
    flagOf(FLAG_VALUES.maxRto, 'time'),
    flagOf(FLAG_VALUES.settle, 'time'),
    flagOf(FLAG_VALUES.report, 'dir'),
  ],
  groups: {},
  notes: [
    `Faults: ${ALL_FAULTS.join(', ')} (docs/drills.md). The nodes a drill starts inherit its ` +
      'environment.',
  ],
});

/** A drill run, as asked for. */
export interface DrillOptions {
  faults: FaultName[];
  regions?: string[];
  nodes?: number;
  durationMs: number;
  rate: number;
  maxRtoMs: number;
  settleMs: number;
  reportDir: string;
}

/**
 * Reads the command line.
 * @throws ConfigError naming the flag or fault that is wrong (the drill exits 2).
 */
export function readDrillArgs(
  argv: readonly string[],
): { type: 'help'; text: string } | { type: 'run'; options: DrillOptions } {
  const read = readFlags(FLAG_VALUES, argv, { positionals: true });
  if (read.help) return { type: 'help', text: renderHelp(DRILL_CONFIG) };
  const { values: f, positionals } = read;
  const [which, extra] = positionals;
  if (!which || extra !== undefined) throw new ConfigError('name one fault, or all');
  const faults =
    which === 'all'
      ? [...ALL_FAULTS]
      : ALL_FAULTS.filter((fault) => fault === (which as FaultName)).slice(0, 1);
  if (faults.length === 0) throw new ConfigError(`unknown fault '${which}'`);
  const { regions, nodes } = f;
  return {
    type: 'run',
    options: {
      faults,
      ...(regions === undefined ? {} : { regions }),
      ...(nodes === undefined ? {} : { nodes }),
      durationMs: f.duration,
      rate: f.rate,
      maxRtoMs: f.maxRto,
      settleMs: f.settle,
      reportDir: resolve(f.report ?? join(PROJECT_ROOT, '.vigil', 'drills')),
    },
  };
}
