/**
 * What the operator CLI (`npx vigil`) accepts: its commands, and the variables that say which
 * edge it talks to. NATS variables count only when `NATS_URL` is set; otherwise the CLI finds the
 * local edge `npm start` runs through `<state dir>/edge.json`.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  name,
  nodeConfig,
  parseSettings,
  settingsGroup,
  type Env,
  type GroupValues,
  NATS_SETTINGS,
  type NatsSettings,
} from '../common/index.js';
import { LOCAL_STATE_SETTINGS } from '../launcher/index.js';
import { MAX_DEAD_LETTER_LIST_LIMIT } from '../../protocol/index.js';

/** What the CLI itself reads. */
export const CLI_SETTINGS = settingsGroup({
  id: 'cli-settings',
  title: 'CLI',
  settings: {
    region: name({
      name: 'VIGIL_REGION',
      defaultText: "the local edge's first region, else `local`",
      meaning:
        'The region whose dead letters and actors the commands show; `creds` writes its users.',
    }),
  },
});

/** Everything the CLI accepts. */
export const CLI_CONFIG = nodeConfig({
  node: 'vigil',
  title: 'CLI (`npx vigil`)',
  usage: 'npx vigil <command> [options]',
  summary:
    'Operator commands against a running edge: dead letters, actors, NATS credentials. Output ' +
    'is for a terminal, or JSON with `--json`. Exit codes: 0 done, 1 failed (no edge, no such ' +
    'letter, NATS error, invalid setting), 2 bad usage.',
  commands: [
    {
      name: 'dlq list [--model <m>] [--limit <n>] [--from <seq>] [--json]',
      meaning: `Dead letters, oldest first (default limit 50, at most ${MAX_DEAD_LETTER_LIST_LIMIT}).`,
    },
    {
      name: 'dlq show <seq> [--json]',
      meaning: 'One dead letter with its task (input, params, deadline, error).',
    },
    {
      name: 'dlq replay <seq>',
      meaning: "Run the letter's task again under the same task id, and remove the letter.",
    },
    {
      name: 'actors [--json]',
      meaning: "The region's actors from their heartbeats: state, breaker, pid, load.",
    },
    {
      name: 'creds generate [--out <dir>] [--regions <r,...>] [--edge-sites <s,...>]',
      meaning:
        'Per-role NATS users: a seed file each and accounts.conf for nats-server (default ' +
        '--out <state dir>/nats-creds, --regions VIGIL_REGION or local); per edge site its ' +
        "gateway's user and its leaf link's; existing seeds are kept, missing ones added; no " +
        'seed is printed. Needs no connection.',
    },
    { name: 'help', meaning: 'This text (as `--help`).' },
    { name: 'version', meaning: "Vigil's version (as `--version`)." },
  ],
  flags: [{ name: '--version', meaning: "Print Vigil's version and exit." }],
  groups: { cli: CLI_SETTINGS, state: LOCAL_STATE_SETTINGS, nats: NATS_SETTINGS },
  notes: [
    '`help` and `version` also work as commands, for `npm exec vigil`, which takes flags such as ' +
      "`--help` for itself. `npm run vigil -- <command> [options]` runs the same CLI, with npm's " +
      'banner on stdout.',
    'With `NATS_URL` set, the CLI connects there (as the admin user) in `VIGIL_REGION`; ' +
      'otherwise to the edge `npm start` is running, as `<state dir>/edge.json` describes it, ' +
      'and the other NATS variables are not read.',
  ],
});

/** The CLI's parsed configuration; `nats` only when `NATS_URL` is set. */
export interface CliSettings {
  cli: GroupValues<typeof CLI_SETTINGS>;
  state: GroupValues<typeof LOCAL_STATE_SETTINGS>;
  nats?: NatsSettings;
}

/**
 * Reads the CLI's variables.
 * @throws ConfigError naming every bad variable.
 */
export function readCliSettings(env: Env): CliSettings {
  const settings: CliSettings = {
    cli: parseSettings(CLI_SETTINGS, env),
    state: parseSettings(LOCAL_STATE_SETTINGS, env),
  };
  if (env['NATS_URL']) settings.nats = parseSettings(NATS_SETTINGS, env);
  return settings;
}

/** The version in the project's `package.json` (found upwards from here: source or `dist/`). */
export function vigilVersion(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'vigil' && pkg.version !== undefined) return pkg.version;
    } catch {
      // No package.json here: look further up.
    }
    if (dirname(dir) === dir) return 'unknown';
  }
}
