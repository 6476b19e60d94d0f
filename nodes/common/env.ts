/**
 * Declared configuration: every variable a node reads is a {@link Setting} (its name, type,
 * default, meaning, and whether it is secret), collected in groups that nodes compose. The same
 * declaration parses the environment at start-up, prints `--help`, and generates
 * `docs/configuration.md`, so the three cannot drift apart.
 *
 * Parsing never lets a bad value through: every problem becomes a {@link ConfigError} naming the
 * variable, the value (a secret's is redacted) and what is allowed, before the node starts
 * anything. An empty value counts as unset.
 */
import { accessSync, constants as fsConstants } from 'node:fs';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { NAME_TOKEN } from '../../protocol/index.js';

/** A configuration value that cannot be used. */
export class ConfigError extends Error {
  override name = 'ConfigError';
  /** The variables (or command-line flags) the problem is about. */
  readonly variables: readonly string[];
  constructor(message: string, options: ErrorOptions & { variables?: readonly string[] } = {}) {
    super(message, options);
    this.variables = options.variables ?? [];
  }
}

/** The environment as a node sees it: variable names to their raw text. */
export type Env = Readonly<Record<string, string | undefined>>;

/** What an error message shows instead of a secret's value. */
export const REDACTED = '<redacted>';

/** Longest value an error message repeats; longer ones are cut. */
const MAX_SHOWN_VALUE = 120;

/** One variable: how it is parsed, and what the reference says about it. */
export interface Setting<T> {
  /** The variable's name, e.g. `VIGIL_GATEWAY_PORT`. */
  readonly name: string;
  /** Its type and range in a few words, for tables: `integer, 0 to 65535`. */
  readonly type: string;
  /** What a value must be, completing "must be ...": `an integer from 0 to 65535`. */
  readonly allowed: string;
  /** The default as the reference shows it; `undefined` when unset means "off" or "none". */
  readonly defaultText: string | undefined;
  /** What it does, a line to a paragraph. */
  readonly meaning: string;
  /** An example value, for JSON and other shapes a type name cannot say. */
  readonly example: string | undefined;
  /** Secret values (keys, passwords) never appear in messages, help or the reference. */
  readonly secret: boolean;
  /** The node refuses to start without it. */
  readonly required: boolean;
  /**
   * The value of `raw` (`undefined` or empty: unset, so the default).
   * @param label what error messages call it; default the variable's name (flags pass `--nodes`).
   * @throws ConfigError naming `label`.
   */
  parse(raw: string | undefined, label?: string): T;
}

/** What every kind of setting declares. */
export interface SettingOptions<T> {
  name: string;
  meaning: string;
  /** The value when unset. */
  default?: T;
  /** The default as the reference shows it, when it is computed or not a plain value. */
  defaultText?: string;
  /** Text parsed as if it were set, when it is unset (a default file that must be read too). */
  defaultRaw?: string;
  required?: boolean;
  secret?: boolean;
}

/** `T` when the setting has a default or is required, else `T | undefined`. */
export type Presence<T, O> = O extends { default: unknown } | { defaultRaw: string }
  ? T
  : O extends { required: true }
    ? T
    : T | undefined;

/** How a kind of setting describes and parses a present value. */
interface Kind<T> {
  type: string;
  allowed: string;
  example?: string;
  /** @throws anything; errors are turned into ConfigErrors naming the variable. */
  parse(raw: string, label: string, shown: string): T;
}

function shownValue(raw: string, secret: boolean): string {
  if (secret) return REDACTED;
  return raw.length > MAX_SHOWN_VALUE ? `${raw.slice(0, MAX_SHOWN_VALUE)}...` : raw;
}

/** `label=value must be <allowed>`: the one shape of a bad-value message. */
function mustBe(label: string, shown: string, allowed: string): ConfigError {
  return new ConfigError(`${label}=${shown} must be ${allowed}`, { variables: [label] });
}

/**
 * A secret's text, and the pieces of it (`tenant:key` pairs, keys), cut out of `message`: a
 * parser's own message may quote what it was given.
 */
function redact(message: string, raw: string): string {
  const pieces = [raw, ...raw.split(/[,:]/)].map((p) => p.trim()).filter((p) => p.length >= 4);
  return pieces
    .sort((a, b) => b.length - a.length)
    .reduce((text, piece) => text.split(piece).join(REDACTED), message);
}

/**
 * A ConfigError for whatever a parser threw: one that already names `label` is kept; others
 * (a file that cannot be read, a protocol ValidationError) get `label=value: ` in front. A
 * secret's value is cut out of either.
 */
function asConfigError(err: unknown, label: string, raw: string, secret: boolean): ConfigError {
  const shown = shownValue(raw, secret);
  const said = err instanceof Error ? err.message : String(err);
  const message = secret ? redact(said, raw) : said;
  const variables = [label];
  if (message.startsWith(label)) {
    if (err instanceof ConfigError && message === said && err.variables.length > 0) return err;
    return new ConfigError(message, { variables });
  }
  // A secret's cause would carry its value: keep the cause only for ordinary settings.
  return new ConfigError(
    `${label}=${shown}: ${message}`,
    secret ? { variables } : { variables, cause: err },
  );
}

/** A plain default as the reference shows it: the value as it would be written, in backticks. */
function defaultCode(options: SettingOptions<unknown>, secret: boolean): string | undefined {
  const value = options.defaultRaw ?? options.default;
  if (value === undefined || secret) return undefined;
  if (Array.isArray(value)) return `\`${value.join(',')}\``;
  return `\`${typeof value === 'string' ? value : JSON.stringify(value)}\``;
}

function define<T>(options: SettingOptions<T>, kind: Kind<T>): Setting<T | undefined> {
  const { name, meaning, secret = false, required = false } = options;
  const setting: Setting<T | undefined> = {
    name,
    type: kind.type,
    allowed: kind.allowed,
    defaultText: options.defaultText ?? defaultCode(options, secret),
    meaning,
    example: kind.example,
    secret,
    required,
    parse(given, label = name) {
      const raw = given === undefined || given === '' ? options.defaultRaw : given;
      if (raw === undefined || raw === '') {
        if (options.default !== undefined) return options.default;
        if (required)
          throw new ConfigError(`${label} is not set: it must be ${kind.allowed}`, {
            variables: [label],
          });
        return undefined;
      }
      try {
        return kind.parse(raw, label, shownValue(raw, secret));
      } catch (err) {
        throw asConfigError(err, label, raw, secret);
      }
    },
  };
  return setting;
}

/** Parses with a zod schema; a failure is `label=value must be <allowed>`. */
function withSchema<T>(schema: z.ZodType<T>, allowed: string): Kind<T>['parse'] {
  return (raw, label, shown) => {
    const parsed = schema.safeParse(raw);
    if (!parsed.success) throw mustBe(label, shown, allowed);
    return parsed.data;
  };
}

function range(min: number | undefined, max: number | undefined): string {
  if (min !== undefined && max !== undefined) return `from ${min} to ${max}`;
  if (min !== undefined) return `of at least ${min}`;
  if (max !== undefined) return `of at most ${max}`;
  return '';
}

/** Options of the numeric kinds. */
export interface NumberOptions extends SettingOptions<number> {
  min?: number;
  max?: number;
  /** Shown after the type: `ms`, `bytes`, `MiB`. */
  unit?: string;
}

/** How a whole number is written: decimal digits, an optional sign, spaces around allowed. */
const INTEGER_TEXT = /^[+-]?\d+$/;
/** How a number is written: decimal, with an optional fraction and exponent. */
const DECIMAL_TEXT = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/**
 * A number written in decimal. `Number()` alone (zod's coercion) also reads hex (`0x10`),
 * binary, octal and `Infinity`, and reads a blank value as 0: a port of " " became 0 (a random
 * port), a sync wait of " " became 0 (every call answered 202).
 */
function numberText(shape: RegExp) {
  return z
    .string()
    .trim()
    .regex(shape)
    .transform((text) => Number(text));
}

/** An integer, within `[min, max]`. */
export function int<const O extends NumberOptions>(options: O): Setting<Presence<number, O>> {
  const { min, max, unit } = options;
  const bounds = range(min, max);
  const allowed = `an integer${bounds ? ` ${bounds}` : ''}${unit ? ` (${unit})` : ''}`;
  let schema = z.number().int();
  if (min !== undefined) schema = schema.min(min);
  if (max !== undefined) schema = schema.max(max);
  const type = [unit ? `integer (${unit})` : 'integer', bounds.replace(/^(from|of) /, '')];
  return define(options, {
    type: type.filter(Boolean).join(', '),
    allowed,
    parse: withSchema(numberText(INTEGER_TEXT).pipe(schema), allowed),
  }) as Setting<Presence<number, O>>;
}

/**
 * The longest delay a Node timer keeps: past 2^31-1 ms `setTimeout` warns and fires after 1 ms,
 * so a lease or an interval set "very long" would become a busy loop.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A duration in whole milliseconds, within `[min, max]` and never past {@link MAX_TIMER_MS}. */
export function durationMs<const O extends NumberOptions>(
  options: O,
): Setting<Presence<number, O>> {
  return int({ ...options, max: Math.min(options.max ?? MAX_TIMER_MS, MAX_TIMER_MS), unit: 'ms' });
}

/** A list of durations in whole milliseconds, each at most {@link MAX_TIMER_MS}. */
export const DURATION_MS_ITEM = z
  .string()
  .regex(/^\d+$/)
  .transform(Number)
  .pipe(z.number().int().max(MAX_TIMER_MS));

/** A number (fractions allowed), within `[min, max]`. */
export function decimal<const O extends NumberOptions>(options: O): Setting<Presence<number, O>> {
  const { min, max } = options;
  const bounds = range(min, max);
  const allowed = `a number${bounds ? ` ${bounds}` : ''}`;
  let schema = z.number();
  if (min !== undefined) schema = schema.min(min);
  if (max !== undefined) schema = schema.max(max);
  return define(options, {
    type: ['number', bounds.replace(/^(from|of) /, '')].filter(Boolean).join(', '),
    allowed,
    parse: withSchema(numberText(DECIMAL_TEXT).pipe(schema), allowed),
  }) as Setting<Presence<number, O>>;
}

/** Options of {@link text}. */
export interface TextOptions extends SettingOptions<string> {
  pattern?: RegExp;
  /** What the pattern allows, in words completing "must be ..."; default the pattern itself. */
  patternText?: string;
  /** The type column; default `string`. */
  type?: string;
}

/** A string, matching `pattern` when one is given. */
export function text<const O extends TextOptions>(options: O): Setting<Presence<string, O>> {
  const { pattern } = options;
  const allowed = pattern
    ? (options.patternText ?? `a string matching ${String(pattern)}`)
    : 'a string';
  return define(options, {
    type: options.type ?? 'string',
    allowed,
    parse: withSchema(pattern ? z.string().regex(pattern) : z.string(), allowed),
  }) as Setting<Presence<string, O>>;
}

/** An interface to listen on: a host name or address, never blank (Node would take "every"). */
export function host<const O extends SettingOptions<string>>(
  options: O,
): Setting<Presence<string, O>> {
  return text({
    ...options,
    pattern: /^[^\s]+$/,
    patternText: 'a host name or address (not blank, no spaces)',
    type: 'host',
  });
}

/** What {@link name} accepts, in words. */
const NAME_TEXT = 'a name (lowercase letters, digits, - and _, at most 64)';

/** A name (a region, a site, a model): what NATS subjects and asset names can carry. */
export function name<const O extends SettingOptions<string>>(
  options: O,
): Setting<Presence<string, O>> {
  return text({ ...options, pattern: NAME_TOKEN, patternText: NAME_TEXT, type: 'name' });
}

/** Options of {@link oneOf}. */
export interface OneOfOptions extends SettingOptions<string> {
  values: readonly [string, ...string[]];
  /** The type column, when the values are too many to list there. */
  type?: string;
}

/** One of a closed set of words. */
export function oneOf<const O extends OneOfOptions>(
  options: O,
): Setting<Presence<O['values'][number], O>> {
  const allowed = `one of ${options.values.join(', ')}`;
  return define(options, {
    type: options.type ?? options.values.join(' | '),
    allowed,
    parse: withSchema(z.enum(options.values), allowed),
  }) as Setting<Presence<O['values'][number], O>>;
}

/** The words {@link flag} takes. */
const TRUE_WORDS = ['1', 'true', 'yes', 'on'];
const FALSE_WORDS = ['0', 'false', 'no', 'off'];

/** A yes/no switch: `1`, `true`, `yes`, `on` or `0`, `false`, `no`, `off`. */
export function flag<const O extends SettingOptions<boolean>>(
  options: O,
): Setting<Presence<boolean, O>> {
  const allowed = `one of ${[...TRUE_WORDS, ...FALSE_WORDS].join(', ')}`;
  return define(options, {
    type: 'boolean',
    allowed,
    parse: withSchema(z.stringbool({ truthy: TRUE_WORDS, falsy: FALSE_WORDS }), allowed),
  }) as Setting<Presence<boolean, O>>;
}

/** Options of {@link list}. */
export interface ListOptions extends SettingOptions<readonly unknown[]> {
  /** Parses each item, after trimming. */
  item: z.ZodType<unknown, string>;
  /** What an item is, in words: `names`, `tenant:key pairs`. */
  items: string;
}

/** A comma-separated list; items are trimmed and none may be empty. Blank means unset. */
export function list<const O extends ListOptions>(
  options: O,
): Setting<Presence<z.output<O['item']>[], O>> {
  const allowed = `a comma-separated list of ${options.items}`;
  return define(options, {
    type: `list of ${options.items}`,
    allowed,
    parse(raw, label, shown) {
      if (raw.trim() === '') return options.default ?? [];
      return raw.split(',').map((part) => {
        const parsed = options.item.safeParse(part.trim());
        if (parsed.success) return parsed.data;
        const item = options.secret ? REDACTED : part.trim();
        throw new ConfigError(`${label}=${shown} must be ${allowed} ('${item}' is not)`, {
          variables: [label],
        });
      });
    },
  }) as Setting<Presence<z.output<O['item']>[], O>>;
}

/** A list of names ({@link name}). */
export function names<const O extends SettingOptions<readonly string[]>>(
  options: O,
): Setting<Presence<string[], O>> {
  return list({ ...options, item: z.string().regex(NAME_TOKEN), items: 'names' });
}

/** Options of {@link url}. */
export interface UrlOptions extends SettingOptions<string> {
  /** Schemes allowed; default `http` and `https`. */
  protocols?: readonly string[];
}

/** An absolute URL. */
export function url<const O extends UrlOptions>(options: O): Setting<Presence<string, O>> {
  const protocols = options.protocols ?? ['http', 'https'];
  const allowed = `a URL (${protocols.join(', ')})`;
  return define(options, {
    type: `URL (${protocols.join(', ')})`,
    allowed,
    parse: withSchema(z.url({ protocol: new RegExp(`^(${protocols.join('|')})$`) }), allowed),
  }) as Setting<Presence<string, O>>;
}

/** Options of {@link file}. */
export interface FileOptions extends SettingOptions<unknown> {
  /** What the file holds, for the type column: `PEM file`, `nkey seed file`. */
  holds?: string;
  /** Reads the file into the value (default: the path itself); may throw a ConfigError. */
  read?: (path: string, label: string) => unknown;
}

/** The value of a {@link file} setting: what `read` returns, else the path. */
export type FileValue<O extends FileOptions> = O extends { read: (...args: never[]) => infer R }
  ? R
  : string;

/** A file that must be readable at start-up, read by `read` when given. */
export function file<const O extends FileOptions>(options: O): Setting<Presence<FileValue<O>, O>> {
  const holds = options.holds ?? 'file';
  return define(options, {
    type: `path (${holds})`,
    allowed: `the path of a readable ${holds}`,
    parse(raw, label, shown) {
      try {
        accessSync(raw, fsConstants.R_OK);
      } catch (err) {
        const reason = (err as Error).message;
        throw new ConfigError(`${label}=${shown} cannot be read: ${reason}`, {
          variables: [label],
        });
      }
      return options.read ? options.read(raw, label) : raw;
    },
  }) as Setting<Presence<FileValue<O>, O>>;
}

/** Options of {@link json}. */
export interface JsonOptions extends SettingOptions<unknown> {
  /** The shape, validated after `JSON.parse`; a ConfigError thrown inside passes through. */
  schema: z.ZodType;
  /** A short example of the shape, for messages and the reference. */
  example: string;
}

/** A JSON value of a given shape. Problems name the field: `VIGIL_BREAKER.failureRatio: ...`. */
export function json<const O extends JsonOptions>(
  options: O,
): Setting<Presence<z.output<O['schema']>, O>> {
  return define(options, {
    type: 'JSON',
    allowed: `JSON like ${options.example}`,
    example: options.example,
    parse(raw, label) {
      let value: unknown;
      try {
        value = JSON.parse(raw);
      } catch (err) {
        throw new ConfigError(`${label} is not valid JSON: ${(err as Error).message}`, {
          variables: [label],
        });
      }
      const parsed = options.schema.safeParse(value);
      if (parsed.success) return parsed.data;
      const issue = parsed.error.issues[0];
      const path = issue && issue.path.length > 0 ? `.${issue.path.join('.')}` : '';
      throw new ConfigError(`${label}${path}: ${issue?.message ?? 'is invalid'}`, {
        variables: [label],
      });
    },
  }) as Setting<Presence<z.output<O['schema']>, O>>;
}

/** Options of {@link custom}. */
export interface CustomOptions extends SettingOptions<unknown> {
  type: string;
  allowed: string;
  /** Parses a present value; may throw (the error is made to name the variable). */
  parse(raw: string, label: string): unknown;
}

/** A setting with its own parser, for formats no other kind covers (`tenant:key,...`). */
export function custom<const O extends CustomOptions>(
  options: O,
): Setting<Presence<ReturnType<O['parse']>, O>> {
  return define(options, {
    type: options.type,
    allowed: options.allowed,
    parse: (raw, label) => options.parse(raw, label),
  }) as Setting<Presence<ReturnType<O['parse']>, O>>;
}

/** `20s`, `500ms`, `2m`, or a plain number of seconds. */
const HUMAN_DURATION = /^(\d+(?:\.\d+)?)(ms|s|m)?$/;

/**
 * A duration written for people (`20s`, `500ms`, `2m`; a plain number is seconds), in ms, within
 * `[min, max]` ms. For command-line flags; variables take plain milliseconds ({@link durationMs}).
 */
export function humanDuration<const O extends NumberOptions>(
  options: O,
): Setting<Presence<number, O>> {
  const seconds = (ms: number | undefined) => (ms === undefined ? undefined : ms / 1000);
  const bounds = range(seconds(options.min), seconds(options.max));
  const allowed = `a duration like 20s, 500ms or 2m${bounds ? `, ${bounds} s` : ''}`;
  return define(options, {
    type: 'duration: 20s, 500ms or 2m',
    allowed,
    parse(raw, label, shown) {
      const match = HUMAN_DURATION.exec(raw.trim());
      const unit = match?.[2] === 'ms' ? 1 : match?.[2] === 'm' ? 60_000 : 1000;
      const ms = match ? Math.round(Number(match[1]) * unit) : NaN;
      const low = options.min !== undefined && ms < options.min;
      const high = options.max !== undefined && ms > options.max;
      if (!match || low || high) throw mustBe(label, shown, allowed);
      return ms;
    },
  }) as Setting<Presence<number, O>>;
}

/** Settings by the property their value takes in the parsed object. */
export type SettingsShape = Readonly<Record<string, Setting<unknown>>>;

/** The parsed values of a shape: a typed object, one property per setting. */
export type SettingsValues<S extends SettingsShape> = {
  -readonly [K in keyof S]: S[K] extends Setting<infer T> ? T : never;
};

/** A rule between settings (`both or neither`), checked once each of them parsed. */
export interface Rule<V> {
  /** The rule in words, for `--help` and the reference. */
  readonly text: string;
  /** The variables it concerns. */
  readonly variables: readonly string[];
  /** A message naming the variables when `values` break the rule, else `undefined`. */
  check(values: V): string | undefined;
}

/** Settings read together, declared once and composed into the nodes that read them. */
export interface SettingsGroup<S extends SettingsShape> {
  /** The reference's anchor: `nats-connection`. */
  readonly id: string;
  readonly title: string;
  /** A paragraph before the table. */
  readonly intro?: string;
  /** Read by several nodes: the reference shows it once, and the nodes link to it. */
  readonly shared: boolean;
  readonly settings: S;
  readonly rules: readonly Rule<SettingsValues<S>>[];
}

/** Declares a group; `rules` check the parsed values together. */
export function settingsGroup<const S extends SettingsShape>(group: {
  id: string;
  title: string;
  intro?: string;
  shared?: boolean;
  settings: S;
  rules?: readonly Rule<SettingsValues<S>>[];
}): SettingsGroup<S> {
  return { ...group, shared: group.shared ?? false, rules: group.rules ?? [] };
}

/** Parses each of `group`'s settings, adding each problem to `problems`; `undefined` if any. */
function parseValues<S extends SettingsShape>(
  group: SettingsGroup<S>,
  env: Env,
  problems: ConfigError[],
): SettingsValues<S> | undefined {
  const values: Record<string, unknown> = {};
  const before = problems.length;
  for (const [key, setting] of Object.entries(group.settings)) {
    try {
      values[key] = setting.parse(env[setting.name]);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(err);
    }
  }
  return problems.length > before ? undefined : (values as SettingsValues<S>);
}

function checkRules<V>(rules: readonly Rule<V>[], values: V): ConfigError[] {
  return rules.flatMap((rule) => {
    const message = rule.check(values);
    return message === undefined ? [] : [new ConfigError(message, { variables: rule.variables })];
  });
}

/** One ConfigError for all `problems`: their messages, and every variable they name. */
function combined(problems: readonly ConfigError[]): ConfigError {
  if (problems.length === 1) return problems[0]!;
  return new ConfigError(problems.map((p) => p.message).join('; '), {
    variables: problems.flatMap((p) => p.variables),
  });
}

/**
 * The values of one group's settings in `env`.
 * @throws ConfigError naming every bad variable.
 */
export function parseSettings<S extends SettingsShape>(
  group: SettingsGroup<S>,
  env: Env,
): SettingsValues<S> {
  const problems: ConfigError[] = [];
  const values = parseValues(group, env, problems);
  if (values !== undefined) problems.push(...checkRules(group.rules, values));
  if (values === undefined || problems.length > 0) throw combined(problems);
  return values;
}

/** A command-line flag, for `--help` and the reference (each program parses its own). */
export interface Flag {
  /** `--regions`. */
  readonly name: string;
  /** Its value's placeholder, `a,b`; absent for a switch. */
  readonly value?: string;
  readonly meaning: string;
}

/**
 * A flag whose value is parsed by `setting` (named after the flag: `--duration`), for programs
 * that take flags rather than variables; its meaning gains the setting's type and default.
 */
export function flagOf(setting: Setting<unknown>, value: string): Flag {
  const facts = [setting.type];
  if (setting.defaultText !== undefined) facts.push(`default ${setting.defaultText}`);
  return { name: setting.name, value, meaning: `${setting.meaning} (${facts.join('; ')})` };
}

/** What {@link readFlags} read: `--help`, or every flag's value and the positionals. */
export type ReadFlags<F extends Readonly<Record<string, Setting<unknown>>>> =
  | { help: true }
  | {
      help: false;
      values: { -readonly [K in keyof F]: ReturnType<F[K]['parse']> };
      positionals: string[];
    };

/**
 * Reads a command line of flags declared as settings (`name: '--nodes'`): one `parseArgs`
 * option per setting, a boolean for a {@link flag}, each value parsed and checked by its setting.
 * @throws ConfigError naming the flag that is wrong, or an unknown flag or stray argument.
 */
export function readFlags<F extends Readonly<Record<string, Setting<unknown>>>>(
  flags: F,
  argv: readonly string[],
  options: { positionals?: boolean } = {},
): ReadFlags<F> {
  const byOption = new Map(
    Object.entries(flags).map(([key, s]) => [s.name.replace(/^--/, ''), { key, s }]),
  );
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: options.positionals ?? false,
      strict: true,
      options: {
        help: { type: 'boolean', short: 'h' },
        ...Object.fromEntries(
          [...byOption].map(([option, { s }]) => [
            option,
            { type: s.type === 'boolean' ? ('boolean' as const) : ('string' as const) },
          ]),
        ),
      },
    });
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  const given = parsed.values as Record<string, string | boolean | undefined>;
  if (given['help'] === true) return { help: true };
  const values: Record<string, unknown> = {};
  for (const [option, { key, s }] of byOption) {
    const raw = given[option];
    values[key] = s.parse(raw === undefined ? undefined : String(raw), `--${option}`);
  }
  return {
    help: false,
    values: values as ReadFlags<F> extends { values: infer V } ? V : never,
    positionals: parsed.positionals,
  };
}

/** The groups of a node's configuration, by the property their values take. */
export type GroupMap = Readonly<Record<string, SettingsGroup<SettingsShape>>>;

/** A node's parsed configuration: one typed object per group. */
export type ConfigValues<G extends GroupMap> = {
  -readonly [K in keyof G]: G[K] extends SettingsGroup<infer S> ? SettingsValues<S> : never;
};

/** Everything one program (a node, the launcher, the CLI) accepts. */
export interface NodeConfig<G extends GroupMap> {
  /** The program, as logs and titles name it: `gateway`. */
  readonly node: string;
  /** The reference's section title: `Gateway`. */
  readonly title: string;
  /** How it is started: `node nodes/gateway/main.ts [--help]`. */
  readonly usage: string;
  /** What it does, a paragraph. */
  readonly summary: string;
  /** Subcommands, for programs that have them (the CLI): `name` holds the command line. */
  readonly commands: readonly Flag[];
  readonly flags: readonly Flag[];
  /** Its own groups first, then the shared ones. */
  readonly groups: G;
  /** Rules across groups. */
  readonly rules: readonly Rule<ConfigValues<G>>[];
  /** Further paragraphs for the reference and `--help`. */
  readonly notes: readonly string[];
}

/** Declares a program's configuration. */
export function nodeConfig<const G extends GroupMap>(config: {
  node: string;
  title: string;
  usage: string;
  summary: string;
  commands?: readonly Flag[];
  flags?: readonly Flag[];
  groups: G;
  rules?: readonly Rule<ConfigValues<G>>[];
  notes?: readonly string[];
}): NodeConfig<G> {
  return {
    ...config,
    commands: config.commands ?? [],
    flags: config.flags ?? [],
    rules: config.rules ?? [],
    notes: config.notes ?? [],
  };
}

/**
 * A program's whole configuration from `env`: every group, then the rules across them.
 * @throws ConfigError naming every bad variable at once.
 */
export function parseConfig<G extends GroupMap>(config: NodeConfig<G>, env: Env): ConfigValues<G> {
  // Every bad value first, then the rules between values that parsed.
  const problems: ConfigError[] = [];
  const values: Record<string, unknown> = {};
  for (const [key, group] of Object.entries(config.groups)) {
    values[key] = parseValues(group, env, problems);
  }
  for (const [key, group] of Object.entries(config.groups)) {
    if (values[key] !== undefined) problems.push(...checkRules(group.rules, values[key]));
  }
  if (problems.length === 0) problems.push(...checkRules(config.rules, values as ConfigValues<G>));
  if (problems.length > 0) throw combined(problems);
  return values as ConfigValues<G>;
}

/** The parsed values of a group. */
export type GroupValues<G> = G extends SettingsGroup<infer S> ? SettingsValues<S> : never;
