/**
 * What `npm start` (the local launcher) accepts: flags, each with a variable of the same meaning,
 * and its own variables. The nodes it starts inherit its environment and read their own.
 */
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { NAME_TOKEN } from '../../protocol/index.js';
import {
  ConfigError,
  int,
  list,
  names,
  nodeConfig,
  parseConfig,
  settingsGroup,
  text,
  type ConfigValues,
  type Env,
  renderHelp,
} from '../common/index.js';
import type { EdgeSiteSpec } from './supercluster.js';

/** Where local state lives, shared by the launcher and the CLI. */
export const LOCAL_STATE_SETTINGS = settingsGroup({
  id: 'local-state',
  title: 'Local state',
  shared: true,
  settings: {
    stateDir: text({
      name: 'VIGIL_STATE_DIR',
      type: 'directory path',
      defaultText: '`.vigil` in the project',
      meaning:
        "Where `npm start` keeps a local edge's data, logs, NATS credentials, demo key and " +
        '`edge.json` (which tells the CLI where the edge is).',
    }),
  },
});

const EDGE_SITE = new RegExp(
  `^${NAME_TOKEN.source.slice(1, -1)}@${NAME_TOKEN.source.slice(1, -1)}$`,
);

/** The launcher's own variables; the first three are also flags. */
export const LAUNCHER_SETTINGS = settingsGroup({
  id: 'launcher-settings',
  title: 'Launcher',
  settings: {
    regions: names({
      name: 'VIGIL_REGIONS',
      default: ['local'],
      meaning:
        'Regions to start (`--regions`), nearest first: spill-over and backlog rescue follow ' +
        'this order.',
    }),
    nodes: int({
      name: 'VIGIL_NODES_PER_REGION',
      min: 1,
      max: 5,
      default: 1,
      meaning:
        'nats-servers per region (`--nodes`); with 3 or more, streams and buckets are ' +
        'replicated three ways.',
    }),
    edges: list({
      name: 'VIGIL_EDGE_SITES',
      item: z
        .string()
        .regex(EDGE_SITE)
        .transform((spec): EdgeSiteSpec => {
          const [site = '', region = ''] = spec.split('@');
          return { site, region };
        }),
      items: 'site@region pairs',
      default: [],
      defaultText: 'none',
      meaning:
        'Edge sites (`--edge`): each a NATS leaf node with its own JetStream domain, attached ' +
        "to its region's hub, with its own gateway.",
    }),
    port: int({
      name: 'VIGIL_PORT',
      min: 0,
      max: 65_535,
      default: 8080,
      meaning:
        "The first gateway's port; the others take the ports after it. 0: every gateway on a " +
        'free port.',
    }),
    demoKey: text({
      name: 'VIGIL_DEMO_KEY',
      secret: true,
      defaultText: 'generated once, kept in `<state dir>/demo-key`',
      meaning: 'The API key of the tenant `demo`.',
    }),
  },
});

/** Everything `npm start` accepts. */
export const LAUNCHER_CONFIG = nodeConfig({
  node: 'launcher',
  title: 'Launcher (`npm start`)',
  usage: 'npm start -- [--regions a,b] [--nodes n] [--edge site@region ...] [--help]',
  summary:
    'A whole local edge on this machine: nats-server (a cluster per region, joined into a ' +
    'supercluster), an actor host with the built-in models and a gateway per region, a ' +
    'controller, each as its own least-privilege NATS user. Ctrl-C stops everything it started.',
  flags: [
    { name: '--regions', value: 'a,b', meaning: 'As `VIGIL_REGIONS`, which it overrides.' },
    { name: '--nodes', value: 'n', meaning: 'As `VIGIL_NODES_PER_REGION`, which it overrides.' },
    {
      name: '--edge',
      value: 'site@region',
      meaning: 'As `VIGIL_EDGE_SITES`, which it overrides; repeat it for more sites.',
    },
  ],
  groups: { launcher: LAUNCHER_SETTINGS, state: LOCAL_STATE_SETTINGS },
  notes: [
    'The nodes it starts inherit its environment, so their variables (gateway, actor host, ' +
      'controller, and the shared groups) apply too; it sets their region, ports, API key, ' +
      'NATS users and log level itself.',
  ],
});

/** The launcher's parsed configuration, flags applied. */
export type LauncherSettings = ConfigValues<(typeof LAUNCHER_CONFIG)['groups']>;

/** What the command line asked for. */
export type LauncherStart =
  { type: 'help'; text: string } | { type: 'run'; settings: LauncherSettings };

/** Bad command-line arguments (exit 2), as opposed to bad values (ConfigError, exit 1). */
export class UsageError extends Error {
  override name = 'UsageError';
}

/**
 * Reads `argv` and `env`: flags override their variables.
 * @throws UsageError for unknown arguments, ConfigError naming each bad flag or variable.
 */
export function readLauncherConfig(argv: readonly string[], env: Env): LauncherStart {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        regions: { type: 'string' },
        nodes: { type: 'string' },
        edge: { type: 'string', multiple: true },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help) return { type: 'help', text: renderHelp(LAUNCHER_CONFIG) };
  // A flag replaces its variable, which is then not read at all.
  const { settings: s } = LAUNCHER_SETTINGS;
  const unflagged: Record<string, string | undefined> = { ...env };
  if (values.regions !== undefined) delete unflagged[s.regions.name];
  if (values.nodes !== undefined) delete unflagged[s.nodes.name];
  if (values.edge !== undefined) delete unflagged[s.edges.name];
  // Every bad value at once: the variables', then the flags'.
  const problems: ConfigError[] = [];
  const attempt = <T>(parse: () => T): T | undefined => {
    try {
      return parse();
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(err);
      return undefined;
    }
  };
  const settings = attempt(() => parseConfig(LAUNCHER_CONFIG, unflagged));
  const regions = attempt(() => s.regions.parse(values.regions, '--regions'));
  const nodes = attempt(() => s.nodes.parse(values.nodes, '--nodes'));
  const edges = attempt(() => s.edges.parse(values.edge?.join(','), '--edge'));
  if (settings === undefined || problems.length > 0) {
    throw new ConfigError(problems.map((p) => p.message).join('; '), {
      variables: problems.flatMap((p) => p.variables),
    });
  }
  if (values.regions !== undefined && regions !== undefined) settings.launcher.regions = regions;
  if (values.nodes !== undefined && nodes !== undefined) settings.launcher.nodes = nodes;
  if (values.edge !== undefined && edges !== undefined) settings.launcher.edges = edges;
  return { type: 'run', settings };
}
