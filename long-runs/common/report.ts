/** Where a long run leaves its figures: a JSON file and a markdown file side by side. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeDirectory } from '../../nodes/common/index.js';

/** Writes `<dir>/<stamp>-<name>.json` and `.md`; returns the base path. */
export function writeReport(dir: string, name: string, json: unknown, markdown: string): string {
  makeDirectory(dir);
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const base = join(dir, `${stamp}-${name}`);
  writeFileSync(`${base}.json`, JSON.stringify(json, null, 2) + '\n');
  writeFileSync(`${base}.md`, markdown);
  return base;
}

/** A markdown table; numbers right-aligned by the renderer's own rules. */
export function markdownTable(
  header: readonly string[],
  rows: readonly (readonly (string | number)[])[],
): string {
  const line = (cells: readonly (string | number)[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n') + '\n';
}
