/**
 * `docs/configuration.md`, generated from the declarations every program's configuration is
 * parsed from (`nodes/<program>/config.ts`, the shared groups in `nodes/common/`), so the page
 * and the code cannot drift apart: `npm run docs:config` writes it, and a unit test fails when
 * the checked-in page differs.
 */
import { format, resolveConfig } from 'prettier';
import { ACTOR_HOST_CONFIG } from '../nodes/actor-host/index.js';
import { CLI_CONFIG } from '../nodes/cli/index.js';
import type {
  Flag,
  GroupMap,
  NodeConfig,
  Rule,
  Setting,
  SettingsGroup,
  SettingsShape,
} from '../nodes/common/index.js';
import { CONTROLLER_CONFIG } from '../nodes/controller/index.js';
import { DRILL_CONFIG } from '../nodes/drill/index.js';
import { GATEWAY_CONFIG } from '../nodes/gateway/index.js';
import { LAUNCHER_CONFIG } from '../nodes/launcher/index.js';
import { PROVISION_CONFIG } from '../nodes/provision/index.js';

/** The page, relative to the project root. */
export const CONFIGURATION_PAGE_PATH = 'docs/configuration.md';

/** The command that writes the page. */
export const CONFIGURATION_PAGE_COMMAND = 'npm run docs:config';

/** Every program, in the page's order. */
export const PROGRAMS: readonly NodeConfig<GroupMap>[] = [
  GATEWAY_CONFIG,
  ACTOR_HOST_CONFIG,
  CONTROLLER_CONFIG,
  PROVISION_CONFIG,
  LAUNCHER_CONFIG,
  DRILL_CONFIG,
  CLI_CONFIG,
];

type AnyGroup = SettingsGroup<SettingsShape>;

/** GitHub's anchor for a heading. */
function slug(heading: string): string {
  return heading
    .toLowerCase()
    .replace(/[^a-z0-9 _-]/g, '')
    .replace(/ /g, '-');
}

/** A table cell: one line, pipes escaped. */
function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ');
}

function defaultCell(setting: Setting<unknown>): string {
  if (setting.required) return '**required**';
  return setting.defaultText ?? 'unset';
}

function meaningCell(setting: Setting<unknown>): string {
  return setting.example === undefined
    ? setting.meaning
    : `${setting.meaning} Example: \`${setting.example}\`.`;
}

function typeCell(setting: Setting<unknown>): string {
  return setting.secret ? `${setting.type} (secret)` : setting.type;
}

function table(group: AnyGroup): string {
  const rows = Object.values(group.settings).map(
    (s) =>
      `| \`${s.name}\` | ${cell(typeCell(s))} | ${cell(defaultCell(s))} | ${cell(meaningCell(s))} |`,
  );
  return ['| Variable | Type | Default | Meaning |', '| --- | --- | --- | --- |', ...rows].join(
    '\n',
  );
}

function rules(list: readonly Rule<never>[]): string[] {
  return list.length === 0 ? [] : ['Rules:\n\n' + list.map((r) => `- ${r.text}`).join('\n')];
}

function entries(title: string, list: readonly Flag[]): string[] {
  if (list.length === 0) return [];
  const rows = list.map(
    (f) =>
      `| \`${f.value === undefined ? f.name : `${f.name} <${f.value}>`}\` | ${cell(f.meaning)} |`,
  );
  return [[`| ${title} | Meaning |`, '| --- | --- |', ...rows].join('\n')];
}

function groupSection(
  group: AnyGroup,
  heading: boolean,
  moreRules: readonly Rule<never>[] = [],
): string[] {
  return [
    ...(heading ? [`### ${group.title}`] : []),
    ...(group.intro === undefined ? [] : [group.intro]),
    table(group),
    ...rules([...group.rules, ...moreRules]),
  ];
}

function link(group: AnyGroup): string {
  return `[${group.title}](#${slug(group.title)})`;
}

function programSection(program: NodeConfig<GroupMap>): string[] {
  const groups = Object.values(program.groups);
  const own = groups.filter((g) => !g.shared);
  const shared = groups.filter((g) => g.shared);
  return [
    `## ${program.title}`,
    program.summary,
    `Run: \`${program.usage}\``,
    ...entries('Command', program.commands),
    ...entries('Flag', [
      { name: '--help', meaning: 'Print what it accepts and exit.' },
      ...program.flags,
    ]),
    ...(shared.length === 0 ? [] : [`Also reads: ${shared.map(link).join(', ')}.`]),
    // The first group is the program's own settings, under its heading, with the rules across
    // groups; further groups get headings of their own.
    ...own.flatMap((g, i) => groupSection(g, i > 0, i === 0 ? program.rules : [])),
    ...(own.length === 0 ? rules(program.rules) : []),
    ...program.notes,
  ];
}

/** The shared groups, once each, with the programs that read them. */
function sharedSection(): string[] {
  const byId = new Map<string, { group: AnyGroup; readers: string[] }>();
  for (const program of PROGRAMS) {
    for (const group of Object.values(program.groups).filter((g) => g.shared)) {
      const entry = byId.get(group.id) ?? { group, readers: [] };
      entry.readers.push(`[${program.title}](#${slug(program.title)})`);
      byId.set(group.id, entry);
    }
  }
  return [
    '## Shared settings',
    'Declared once, read by several programs.',
    ...[...byId.values()].flatMap(({ group, readers }) => [
      `### ${group.title}`,
      `Read by: ${readers.join(', ')}.`,
      ...groupSection(group, false),
    ]),
  ];
}

const INTRO = [
  '# Configuration',
  '<!-- Generated by `npm run docs:config` from the declarations in nodes/; edit those, not this page. `npm test` fails when the two differ. -->',
  'Every Vigil program reads its configuration from environment variables (and a few flags), ' +
    'declared once in its `config.ts` and in the shared groups of `nodes/common/`. The same ' +
    'declarations parse the values at start-up, print `--help`, and generate this page.',
  '- An empty value counts as unset.\n' +
    '- An invalid value stops the program at start-up, before it connects to anything, with one ' +
    'line naming the variable, the value and what is allowed (nodes: a JSON log line, exit code ' +
    '1). Every bad value is reported at once.\n' +
    '- Secret values (keys, passwords, tokens, webhook URLs) never appear in messages or help.\n' +
    '- `--help` on any program prints its part of this page, and exits 0 without starting ' +
    'anything: `npm start -- --help`, `npx vigil --help`, `node dist/nodes/gateway/main.js ' +
    '--help` (compiled, as the containers run it) or `node --import tsx nodes/gateway/main.ts ' +
    '--help` (from the source).',
];

/**
 * Names that look like settings but are read by something else (or are not variables at all),
 * each with where it belongs: the page lists them, and the unit test accepts them in the tree.
 */
export const READ_ELSEWHERE: readonly { names: string; match: RegExp; where: string }[] = [
  {
    names: '`VIGIL_NATS_*`',
    match: /^VIGIL_NATS_/,
    where:
      'the nats-server configuration files in `deploy/nats/` (each lists its own in its header)',
  },
  {
    names: '`VIGIL_READY_FILE`',
    match: /^VIGIL_READY_FILE$/,
    where: '`deploy/containers/run-with-ready-file.sh`',
  },
  {
    names: '`VIGIL_APP_ROOT`',
    match: /^VIGIL_APP_ROOT$/,
    where: '`deploy/containers/provision-region.sh`',
  },
  {
    names: '`VIGIL_UID`, `VIGIL_GID`',
    match: /^VIGIL_[UG]ID$/,
    where: '`deploy/compose` (written by `make-secrets.sh`)',
  },
  {
    names: '`NATS_SERVER_BIN`',
    match: /^NATS_SERVER_BIN$/,
    where: '`npm run setup` (`scripts/`): a nats-server to use instead of downloading one',
  },
  {
    names: '`VIGIL_SETUP_RUNNING`',
    match: /^VIGIL_SETUP_RUNNING$/,
    where: '`scripts/setup.mjs` sets it for its own children, so setup does not run twice',
  },
  {
    names: '`BENCH_*`, `FLOOR_*`',
    match: /^(BENCH|FLOOR)_/,
    where: '`npm run bench` (`bench/README.md`)',
  },
  { names: '`VIGIL_CHAOS`', match: /^VIGIL_CHAOS$/, where: 'the chaos suite (`docs/chaos.md`)' },
  {
    names: '`VIGIL_REQ_<REGION>`, `VIGIL_DLQ_<REGION>`, `VIGIL_CONTROL_LOG`',
    match: /^VIGIL_(REQ_|DLQ_|CONTROL_LOG$)/,
    where: 'not variables: the names of JetStream streams',
  },
];

const NOT_HERE = [
  '## Read elsewhere',
  'Names like these are not read by the programs above:',
  READ_ELSEWHERE.map((e) => `- ${e.names}: ${e.where}.`).join('\n'),
];

/** The page as markdown, before formatting. */
export function configurationMarkdown(): string {
  const contents = [
    '**Programs:** ' + PROGRAMS.map((p) => `[${p.title}](#${slug(p.title)})`).join(', ') + '.',
  ];
  const parts = [
    ...INTRO,
    ...contents,
    ...PROGRAMS.flatMap(programSection),
    ...sharedSection(),
    ...NOT_HERE,
  ];
  return parts.join('\n\n') + '\n';
}

/** The page as checked in: {@link configurationMarkdown} formatted by the project's prettier. */
export async function configurationPage(root: string): Promise<string> {
  const options = (await resolveConfig(`${root}/${CONFIGURATION_PAGE_PATH}`)) ?? {};
  return format(configurationMarkdown(), { ...options, parser: 'markdown' });
}
