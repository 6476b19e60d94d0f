/**
 * Hostile configuration: every declared setting of every program (the same declarations that
 * parse the environment, print `--help` and write docs/configuration.md) given values wrong in
 * type and range, and the files settings read (API keys file, alert rules) with each field made
 * wrong. A value must either be refused with a ConfigError that names the variable (and, in JSON
 * and files, the field), or be one the program can use: never another exception, never a wrong
 * value accepted silently.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { ConfigError, type Setting } from '../../../nodes/common/index.js';
import { PROGRAMS } from '../../../scripts/config-page.js';

/** Every declared setting once (shared groups are declared once and read by several programs). */
export function allSettings(): Setting<unknown>[] {
  const byName = new Map<string, Setting<unknown>>();
  for (const program of PROGRAMS) {
    for (const group of Object.values(program.groups)) {
      for (const setting of Object.values(group.settings)) byName.set(setting.name, setting);
    }
  }
  return [...byName.values()];
}

/** The longest delay a Node timer can wait; past it, setTimeout fires after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Bounds of a numeric setting, read from its declaration's own words. */
function bounds(s: Setting<unknown>): { min: number; max: number } {
  const from = /from (-?[\d.e+]+) to (-?[\d.e+]+)/.exec(s.allowed);
  const least = /at least (-?[\d.e+]+)/.exec(s.allowed);
  const most = /at most (-?[\d.e+]+)/.exec(s.allowed);
  return {
    min: Number(from?.[1] ?? least?.[1] ?? -Infinity),
    max: Number(from?.[2] ?? most?.[1] ?? Infinity),
  };
}

const INTEGER = /^[+-]?\d+$/;
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/**
 * Why an accepted value cannot be used, or undefined when it can. Kinds with no test of their
 * own (free strings, names and words the declaration's pattern already pins) pass.
 */
export function unusable(s: Setting<unknown>, raw: string, value: unknown): string | undefined {
  const text = raw.trim();
  if (s.type.startsWith('integer') || s.type.startsWith('number')) {
    const { min, max } = bounds(s);
    const shape = s.type.startsWith('integer') ? INTEGER : DECIMAL;
    if (text === '')
      return `blank ${JSON.stringify(raw)} was taken as ${String(value)}, not as unset`;
    if (!shape.test(text))
      return `${JSON.stringify(raw)} is not a decimal ${s.type.split(',')[0]} but was taken as ${String(value)}`;
    if (typeof value !== 'number' || value < min || value > max)
      return `${String(value)} is outside ${min}..${max}`;
    if (s.type.includes('(ms)')) {
      const limit = /DEADLINE/.test(s.name) ? Number.MAX_SAFE_INTEGER - Date.now() : MAX_TIMER_MS;
      if (value > limit)
        return `${value} ms is past what it can be used for (${limit}): the setting has no upper bound`;
    }
    return undefined;
  }
  if (s.type === 'list of whole milliseconds') {
    const items = value as number[];
    const bad = items.find((ms) => !Number.isSafeInteger(ms) || ms > MAX_TIMER_MS);
    return bad === undefined
      ? undefined
      : `retry delay ${bad} ms is not a delay a timer or JetStream can wait`;
  }
  if (s.type === 'list of server URLs') {
    for (const item of value as string[]) {
      const url = item.includes('://') ? item : `nats://${item}`;
      if (!URL.canParse(url) || !/^(nats|tls):$/.test(new URL(url).protocol))
        return `server ${JSON.stringify(item)} is not a URL a NATS client can dial`;
    }
    return undefined;
  }
  if (s.type.startsWith('URL')) {
    return URL.canParse(String(value)) ? undefined : `${String(value)} is not a URL`;
  }
  if (/_HOST$/.test(s.name) && (text === '' || /\s/.test(String(value)))) {
    return `host ${JSON.stringify(raw)} is not an interface to listen on`;
  }
  return undefined;
}

/** Values wrong in type or range for a setting of `type` (and some right ones, as controls). */
function valuesFor(s: Setting<unknown>): fc.Arbitrary<string> {
  const numeric = s.type.startsWith('integer') || s.type.startsWith('number');
  const { min, max } = numeric ? bounds(s) : { min: 0, max: 0 };
  const general = fc.oneof(
    fc.constantFrom(
      ' ',
      '\t',
      '\n',
      'null',
      'undefined',
      'true',
      '[]',
      '{}',
      '-',
      ',',
      ',,',
      '*',
      '>',
      '$',
      '%',
      '\\',
      '"',
      "'",
      '\u0000',
      '\u00e9',
      '\u{1F642}',
    ),
    fc.string({ maxLength: 30 }),
    fc.string({ unit: 'binary', maxLength: 30 }),
    fc.integer({ min: 130, max: 5000 }).map((n) => 'x'.repeat(n)),
  );
  if (!numeric) {
    return fc.oneof(
      general,
      fc.constantFrom(
        '0x10',
        '1e3',
        '-1',
        '0',
        'a,b',
        'a, ,b',
        'A',
        'a.b',
        'nats://',
        '::::',
        'http://',
        'ftp://x',
        'http://x y',
        '/nonexistent',
        '/etc',
        '/dev/null',
        'on',
        'off',
        'yes',
        'YES',
        'debug',
        'DEBUG',
      ),
    );
  }
  const edges = [min, max, min - 1, max + 1].filter(Number.isFinite);
  return fc.oneof(
    general,
    fc.constantFrom(
      ...edges.map(String),
      '0x10',
      '0X1F',
      '0b1',
      '0o7',
      '1e3',
      '1E3',
      '2e-3',
      '1.0',
      '1.5',
      '-0',
      '+5',
      ' 7 ',
      '007',
      '1_000',
      '1,000',
      'Infinity',
      '-Infinity',
      'NaN',
      '99999999999999999999',
      String(2 ** 31),
      String(2 ** 53),
      '٣',
    ),
    fc.integer().map(String),
    fc.double().map(String),
  );
}

/** One setting and a value for it. */
export interface SettingCase {
  name: string;
  raw: string;
}

/** Generated cases over every declared setting that is parsed from text alone. */
export function settingCases(): fc.Arbitrary<SettingCase> {
  const settings = allSettings().filter((s) => s.type !== 'JSON' && !s.type.startsWith('path'));
  return fc.oneof(...settings.map((s) => valuesFor(s).map((raw) => ({ name: s.name, raw }))));
}

/** What a setting did with a value: refused it properly, took it, or broke the rule. */
export function judgeSetting(
  s: Setting<unknown>,
  raw: string,
): { outcome: string; problem?: string } {
  let value: unknown;
  try {
    value = s.parse(raw);
  } catch (err) {
    if (!(err instanceof ConfigError)) {
      return {
        outcome: 'crashed',
        problem: `threw ${(err as Error).name}, not a ConfigError: ${(err as Error).message}`,
      };
    }
    if (!err.variables.includes(s.name) || !err.message.includes(s.name)) {
      return {
        outcome: 'refused without naming it',
        problem: `ConfigError does not name ${s.name}: ${err.message}`,
      };
    }
    if (/\n\s+at /.test(err.message))
      return { outcome: 'refused with a stack', problem: err.message };
    if (s.secret && raw.trim().length >= 4 && err.message.includes(raw.trim())) {
      return {
        outcome: 'refused, secret shown',
        problem: `the message repeats the secret value: ${err.message}`,
      };
    }
    return { outcome: 'ConfigError naming it' };
  }
  // A blank value is unset, so it may take the default; anything else it is taken as is not.
  if (raw.trim() === '' && isDefault(s, value)) return { outcome: 'blank: the default' };
  const why = unusable(s, raw, value);
  return why
    ? { outcome: 'accepted though wrong', problem: why }
    : { outcome: 'accepted (usable)' };
}

function isDefault(s: Setting<unknown>, value: unknown): boolean {
  try {
    return JSON.stringify(s.parse(undefined)) === JSON.stringify(value);
  } catch {
    return false;
  }
}

/** A JSON document, its field paths, and how to make one field wrong. */
type Doc = Record<string, unknown>;

/** Wrong values for a JSON field: other types, out of range, absurd. */
const wrongField = fc.constantFrom<unknown>(
  'x',
  '',
  '10',
  -1,
  0,
  -0.5,
  1.5,
  1e308,
  2 ** 53 + 2,
  null,
  true,
  false,
  [],
  {},
  [1],
  { a: 1 },
  'x'.repeat(5000),
);

/** Every path to a value in `doc` (objects' keys and array indexes). */
function paths(doc: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  if (typeof doc !== 'object' || doc === null) return [prefix];
  const entries = Array.isArray(doc) ? doc.map((v, i) => [i, v] as const) : Object.entries(doc);
  return [prefix, ...entries.flatMap(([k, v]) => paths(v, [...prefix, k]))];
}

function setAt(doc: unknown, path: (string | number)[], value: unknown, remove: boolean): unknown {
  if (path.length === 0) return value;
  const copy = (Array.isArray(doc) ? [...(doc as unknown[])] : { ...(doc as Doc) }) as Record<
    string | number,
    unknown
  >;
  const [head, ...rest] = path;
  if (remove && rest.length === 0) delete copy[head!];
  else copy[head!] = setAt(copy[head!], rest, value, remove);
  return copy;
}

/** A document with one field changed (or removed, or one unknown field added). */
export interface DocCase {
  /** The setting (variable) the document is given through. */
  name: string;
  path: string;
  change: string;
  text: string;
}

/** A valid document for each JSON setting and file, to make wrong one field at a time. */
export const VALID_DOCS: Record<string, Doc> = {
  VIGIL_TENANT_LIMITS: {
    alpha: {
      rate: { perSecond: 10, burst: 20 },
      reads: { perSecond: 5 },
      maxConcurrent: 8,
      quota: { perDay: 100, perMonth: 1000 },
    },
  },
  VIGIL_DEFAULT_TENANT_LIMITS: {
    rate: { perSecond: 10, burst: 20 },
    maxConcurrent: 8,
    quota: { perDay: 100 },
  },
  VIGIL_MODEL_ISOLATION: { echo: 'child-process', 'hash-embed': 'worker-thread' },
  VIGIL_RESTART: {
    maxRestarts: 5,
    withinMs: 60000,
    initialMs: 50,
    maxMs: 5000,
    pingIntervalMs: 1000,
    pingTimeoutMs: 3000,
  },
  VIGIL_BREAKER: { windowMs: 30000, minCalls: 10, failureRatio: 0.5, cooldownMs: 10000, probes: 2 },
  VIGIL_ECHO_FAULTS: { enabled: true, failureRate: 0.5, delayMs: 0, maxDelayMs: 60000 },
  VIGIL_API_KEYS_FILE: {
    keys: [
      { tenant: 'acme', sha256: 'a'.repeat(64) },
      { tenant: 'beta', key: 'k'.repeat(20) },
    ],
    tenants: { acme: { rate: { perSecond: 1 } } },
  },
  VIGIL_ALERT_RULES: {
    rules: [
      {
        name: 'stuck',
        description: 'd',
        when: { metric: 'heartbeat.stuck' },
        forMs: 60000,
        severity: 'critical',
        action: { type: 'restart-actor' },
        cooldownMs: 300000,
        keepFiringForMs: 0,
      },
      {
        name: 'deep',
        when: { metric: 'queue.depth', op: '>', value: 5000 },
        forMs: 1000,
        severity: 'warning',
        action: { type: 'shift-traffic' },
      },
    ],
  },
};

/** Documents with one field wrong (or gone, or added), for every JSON setting and file. */
export function docCases(): fc.Arbitrary<DocCase> {
  return fc.oneof(
    ...Object.entries(VALID_DOCS).map(([name, doc]) =>
      fc
        .record({
          path: fc.constantFrom(...paths(doc)),
          value: wrongField,
          how: fc.constantFrom('replace', 'replace', 'replace', 'remove', 'add'),
        })
        .map(({ path, value, how }) => {
          const changed =
            how === 'add'
              ? setAt(doc, [...path, 'unexpected'], value, false)
              : setAt(doc, path, value, how === 'remove');
          return {
            name,
            path: path.join('.'),
            change:
              how === 'add'
                ? `add unexpected=${JSON.stringify(value)}`
                : how === 'remove'
                  ? 'remove'
                  : `= ${JSON.stringify(value)?.slice(0, 40)}`,
            text: JSON.stringify(changed),
          };
        }),
    ),
  );
}

let docDir: string | undefined;

/** The raw value a document is given as: the JSON itself, or (files) the path of a file holding it. */
export function docRaw(c: DocCase): string {
  if (c.name !== 'VIGIL_API_KEYS_FILE' && c.name !== 'VIGIL_ALERT_RULES') return c.text;
  docDir ??= mkdtempSync(join(tmpdir(), 'vigil-hostile-config-'));
  const path = join(docDir, `${c.name}-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(path, c.text);
  return path;
}

/** Numbers in an accepted document that no setting can mean: past 2^53, or not finite. */
export function absurdNumbers(value: unknown, path = ''): string[] {
  // A rule's threshold is compared, never waited for or counted to: any number will do.
  if (path.endsWith('when.value') || /^\d+\.value$/.test(path)) return [];
  if (typeof value === 'number')
    return Number.isFinite(value) && Math.abs(value) <= Number.MAX_SAFE_INTEGER
      ? []
      : [`${path}=${value}`];
  if (typeof value !== 'object' || value === null) return [];
  return Object.entries(value).flatMap(([k, v]) => absurdNumbers(v, path ? `${path}.${k}` : k));
}
