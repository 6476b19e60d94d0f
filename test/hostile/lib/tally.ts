/**
 * Counts of what hostile inputs came to, per boundary and outcome, and the inputs that broke a
 * pass criterion (a violation), each with enough to replay it. The suites assert on the
 * violations and print the counts; `npm run fuzz` prints them as a table.
 */

/** One input that broke a pass criterion. */
export interface Violation {
  boundary: string;
  /** The outcome it was counted under (`5xx`, `dropped`, `not final`...). */
  outcome: string;
  /** What was wrong, in a sentence. */
  problem: string;
  /** The input, printable (raw HTTP escaped, payloads as hex). */
  input: string;
}

/** Counts per boundary and outcome, and the violations. */
export class Tally {
  readonly counts = new Map<string, Map<string, number>>();
  readonly violations: Violation[] = [];
  /** The first input counted under each boundary and outcome, to show what an outcome means. */
  readonly examples = new Map<string, string>();

  count(boundary: string, outcome: string, example?: string): void {
    let row = this.counts.get(boundary);
    if (!row) this.counts.set(boundary, (row = new Map<string, number>()));
    row.set(outcome, (row.get(outcome) ?? 0) + 1);
    const key = `${boundary}: ${outcome}`;
    if (example !== undefined && !this.examples.has(key))
      this.examples.set(key, printable(example));
  }

  /** Counts `outcome` and records it as a violation. */
  violate(boundary: string, outcome: string, problem: string, input: string): void {
    this.count(boundary, outcome, input);
    this.violations.push({ boundary, outcome, problem, input: printable(input) });
  }

  /** Cases counted at `boundary` (any outcome). */
  total(boundary: string): number {
    let n = 0;
    for (const v of this.counts.get(boundary)?.values() ?? []) n += v;
    return n;
  }

  /** The counts as a text table, one row per boundary and outcome, violations marked. */
  table(): string {
    const bad = new Set(this.violations.map((v) => `${v.boundary}\0${v.outcome}`));
    const rows: [string, string, string][] = [['boundary', 'outcome', 'count']];
    for (const [boundary, row] of [...this.counts].sort(([a], [b]) => a.localeCompare(b))) {
      for (const [outcome, n] of [...row].sort(([a], [b]) => a.localeCompare(b))) {
        const mark = bad.has(`${boundary}\0${outcome}`) ? '  << VIOLATION' : '';
        rows.push([boundary, outcome, `${n}${mark}`]);
      }
      rows.push([boundary, '(total)', String(this.total(boundary))]);
    }
    const width = [0, 1].map((i) => Math.max(...rows.map((r) => r[i]!.length)));
    return rows
      .map((r) => `${r[0].padEnd(width[0]!)}  ${r[1].padEnd(width[1]!)}  ${r[2]}`)
      .join('\n');
  }

  /** One violation of each kind (boundary and outcome), with how many there were. */
  reportByOutcome(): string {
    const first = new Map<string, Violation>();
    for (const v of this.violations) {
      const key = `${v.boundary}: ${v.outcome}`;
      if (!first.has(key)) first.set(key, v);
    }
    return [...first]
      .map(([key, v], i) => {
        const n = this.counts.get(v.boundary)?.get(v.outcome) ?? 0;
        return `${i + 1}. [${key}] x${n}: ${v.problem}\n   input: ${v.input}`;
      })
      .join('\n');
  }

  /** The first `limit` violations, each with its input, for an assertion message. */
  report(limit = 10): string {
    const shown = this.violations
      .slice(0, limit)
      .map((v, i) => `${i + 1}. [${v.boundary}] ${v.outcome}: ${v.problem}\n   input: ${v.input}`);
    const more = this.violations.length - shown.length;
    return [...shown, ...(more > 0 ? [`... and ${more} more`] : [])].join('\n');
  }
}

/** Longest input a violation keeps: enough to replay a case, not a whole oversize body. */
const MAX_SHOWN_INPUT = 1200;

/**
 * `text` with control characters escaped, runs of one character (oversize values) written as
 * `<c x N>`, cut to a readable length.
 */
export function printable(text: string): string {
  const escaped = JSON.stringify(text)
    .slice(1, -1)
    .replace(/(.)\1{23,}/gsu, (run, char: string) => `<${char} x ${[...run].length}>`);
  return escaped.length > MAX_SHOWN_INPUT
    ? `${escaped.slice(0, MAX_SHOWN_INPUT)}... (${escaped.length} characters)`
    : escaped;
}
