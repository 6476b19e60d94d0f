/**
 * `--help` text from a program's declared configuration: usage, flags, then every variable with
 * its type, default and meaning, group by group. Plain text, wrapped for a terminal.
 */
import type {
  Flag,
  GroupMap,
  NodeConfig,
  Rule,
  Setting,
  SettingsGroup,
  SettingsShape,
} from './env.js';

/** Where the whole reference lives, relative to the project root. */
export const CONFIGURATION_PAGE = 'docs/configuration.md';

/** Width help text is wrapped to. */
const WIDTH = 100;

/** `text` wrapped to {@link WIDTH}, every line indented by `indent` spaces. */
export function wrap(text: string, indent: number): string {
  const pad = ' '.repeat(indent);
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line !== '' && pad.length + line.length + 1 + word.length > WIDTH) {
      lines.push(pad + line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  if (line !== '') lines.push(pad + line);
  return lines.join('\n');
}

/** A setting's type, default and marks on one line: `integer, 0 to 65535; default 8080`. */
export function settingFacts(setting: Setting<unknown>): string {
  const facts = [setting.type];
  if (setting.required) facts.push('required');
  else if (setting.defaultText !== undefined) facts.push(`default ${setting.defaultText}`);
  if (setting.secret) facts.push('secret');
  return facts.join('; ');
}

function flagLine(flag: Flag): string {
  return flag.value === undefined ? flag.name : `${flag.name} <${flag.value}>`;
}

function rulesText(rules: readonly Rule<never>[]): string[] {
  if (rules.length === 0) return [];
  return ['  Rules:', ...rules.map((rule) => wrap(`- ${rule.text}`, 4))];
}

function groupText(group: SettingsGroup<SettingsShape>): string {
  const settings = Object.values(group.settings).map((setting) =>
    [
      `  ${setting.name}`,
      wrap(settingFacts(setting), 6),
      wrap(setting.meaning, 6),
      ...(setting.example === undefined ? [] : [wrap(`e.g. ${setting.example}`, 6)]),
    ].join('\n'),
  );
  return [group.title, ...settings, ...rulesText(group.rules)].join('\n');
}

/** The whole `--help` text of a program. */
export function renderHelp<G extends GroupMap>(config: NodeConfig<G>): string {
  const flags = [{ name: '--help', meaning: 'Print this help and exit.' }, ...config.flags];
  const groups = Object.values(config.groups);
  const entries = (title: string, list: readonly Flag[]) =>
    [title, ...list.map((f) => `  ${flagLine(f)}\n${wrap(f.meaning, 6)}`)].join('\n');
  const parts = [wrap(`${config.title}: ${config.summary}`, 0), `Usage: ${config.usage}`];
  if (config.commands.length > 0) parts.push(entries('Commands:', config.commands));
  parts.push(entries('Options:', flags));
  if (groups.length > 0) {
    parts.push(
      wrap(
        `Environment (an empty value counts as unset; an invalid one stops ${config.node} at ` +
          'start-up, naming the variable):',
        0,
      ),
      ...groups.map(groupText),
    );
  }
  if (config.rules.length > 0) parts.push(rulesText(config.rules).join('\n').replace(/^ {2}/, ''));
  parts.push(...config.notes.map((note) => wrap(note, 0)));
  parts.push(`Every setting of every program: ${CONFIGURATION_PAGE}`);
  return parts.join('\n\n') + '\n';
}
