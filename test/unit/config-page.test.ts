/**
 * The configuration reference cannot drift from the code: `docs/configuration.md` is what the
 * declarations generate, every variable name the tree mentions (code, manifests, docs) is
 * declared or listed as read elsewhere, and only a node's `main.ts` reads `process.env`.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, test } from 'node:test';
import { PROJECT_ROOT } from '../../nodes/launcher/index.js';
import {
  CONFIGURATION_PAGE_COMMAND,
  CONFIGURATION_PAGE_PATH,
  configurationPage,
  PROGRAMS,
  READ_ELSEWHERE,
} from '../../scripts/config-page.js';

/** Files under `dir` (relative to the root) whose names end with one of `extensions`. */
function filesIn(dir: string, extensions: readonly string[]): string[] {
  return readdirSync(join(PROJECT_ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && extensions.some((ext) => e.name.endsWith(ext)))
    .map((e) => relative(PROJECT_ROOT, join(e.parentPath, e.name)));
}

const NAME = /\b((?:VIGIL|OTEL|NATS)_[A-Z0-9_]*[A-Z0-9])\b/g;
const QUOTED_NAME = /['"`]((?:VIGIL|OTEL|NATS)_[A-Z0-9_]*[A-Z0-9])\b/g;

const declared = new Set(
  PROGRAMS.flatMap((p) =>
    Object.values(p.groups).flatMap((g) => Object.values(g.settings).map((s) => s.name)),
  ),
);

describe('the configuration reference', () => {
  test(`${CONFIGURATION_PAGE_PATH} is what the declarations generate`, async () => {
    const expected = await configurationPage(PROJECT_ROOT);
    const actual = readFileSync(join(PROJECT_ROOT, CONFIGURATION_PAGE_PATH), 'utf8');
    if (actual !== expected) {
      const at = [...expected].findIndex((char, i) => actual[i] !== char);
      const line = expected.slice(0, at).split('\n').length;
      assert.fail(
        `${CONFIGURATION_PAGE_PATH} differs from the declarations in nodes/ (first at line ` +
          `${line}): run \`${CONFIGURATION_PAGE_COMMAND}\` and commit the page`,
      );
    }
  });

  test('every variable named in the code, the manifests and the docs is declared or read elsewhere', () => {
    const sources = [
      ...filesIn('nodes', ['.ts']),
      ...filesIn('deploy/k8s/vigil', ['.yaml']),
      'deploy/compose/compose.yaml',
      'deploy/containers/Dockerfile',
      'README.md',
      ...filesIn('docs', ['.md']).filter((f) => f !== CONFIGURATION_PAGE_PATH),
    ];
    const unknown: string[] = [];
    for (const file of sources) {
      const text = readFileSync(join(PROJECT_ROOT, file), 'utf8');
      // In code, a variable's name is quoted ('VIGIL_REGION', `VIGIL_REGION`); bare ones are
      // constants (NATS_SETTINGS). Elsewhere every mention counts.
      const names = file.endsWith('.ts') ? QUOTED_NAME : NAME;
      for (const match of text.matchAll(names)) {
        const name = match[1]!;
        if (declared.has(name) || READ_ELSEWHERE.some((e) => e.match.test(name))) continue;
        unknown.push(`${file}: ${name}`);
      }
    }
    assert.deepEqual(
      [...new Set(unknown)],
      [],
      'declare these in a config.ts (or list them in READ_ELSEWHERE, scripts/config-page.ts)',
    );
  });

  test("only a node's main.ts reads process.env", () => {
    const readers = ['protocol', 'actors', 'nodes']
      .flatMap((dir) => filesIn(dir, ['.ts']))
      .filter((file) => /process\.env\b/.test(readFileSync(join(PROJECT_ROOT, file), 'utf8')))
      // Passes the whole environment on to the nodes it starts; reads nothing from it.
      .filter((file) => file !== 'nodes/launcher/node-process.ts');
    for (const file of readers) assert.match(file, /^nodes\/[a-z-]+\/main\.ts$/, file);
  });
});
