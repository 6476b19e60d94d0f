/**
 * The lint rule that keeps the folder doors and the import direction (scripts/lint/folder-doors.mjs),
 * run through ESLint on sources placed in the real tree's folders: what `npm run lint` (and so
 * CI) refuses, and what it lets through.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ESLint } from 'eslint';
import tseslint from 'typescript-eslint';
import vigil from '../../scripts/lint/folder-doors.mjs';
import { PROJECT_ROOT } from '../../nodes/launcher/index.js';

const LAYERS = [
  { folder: 'protocol', mayNotImport: ['actors', 'nodes'] },
  { folder: 'actors', mayNotImport: ['nodes'] },
  { folder: 'nodes/gateway', mayNotImport: ['actors'] },
];

const eslint = new ESLint({
  cwd: PROJECT_ROOT,
  overrideConfigFile: true,
  overrideConfig: [
    {
      files: ['**/*.ts'],
      languageOptions: { parser: tseslint.parser },
      plugins: { vigil },
      rules: { 'vigil/folder-doors': ['error', { root: PROJECT_ROOT, layers: LAYERS }] },
    },
  ],
});

/** The rule's messages for `code` as if it were the file at `path` (relative to the root). */
async function problems(path: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: join(PROJECT_ROOT, path) });
  return (result?.messages ?? []).map((m) => m.message);
}

describe('folder doors and the import direction', () => {
  test('an import past a door is refused, and names the door', async () => {
    const found = await problems(
      'nodes/launcher/example.ts',
      "import { openMailbox } from '../../actors/mailbox.js';",
    );
    assert.equal(found.length, 1);
    assert.match(found[0]!, /inside actors\/: import actors\/index\.ts instead/);
  });

  test('nested doors count from the outside in', async () => {
    const found = await problems(
      'nodes/launcher/example.ts',
      "import { startExecutor } from '../../actors/executors/index.js';",
    );
    assert.equal(found.length, 1);
    assert.match(found[0]!, /import actors\/index\.ts instead/);
  });

  test('inside a folder, a subfolder is reached through its own door', async () => {
    assert.equal(
      (await problems('actors/example.ts', "import { X } from './executors/errors.js';")).length,
      1,
    );
    assert.deepEqual(
      await problems('actors/example.ts', "import { X } from './executors/index.js';"),
      [],
    );
    assert.deepEqual(await problems('actors/example.ts', "import { X } from './mailbox.js';"), []);
  });

  test('imports point nodes -> actors -> protocol, and the gateway never imports actors', async () => {
    const upward = await problems(
      'protocol/example.ts',
      "import { X } from '../nodes/common/index.js';",
    );
    assert.match(upward[0] ?? '', /protocol\/ may not import nodes\//);
    const gateway = await problems(
      'nodes/gateway/example.ts',
      "import { X } from '../../actors/index.js';",
    );
    assert.match(gateway[0] ?? '', /nodes\/gateway\/ may not import actors\//);
    const reexport = await problems(
      'actors/example.ts',
      "export { X } from '../nodes/common/index.js';",
    );
    assert.match(reexport[0] ?? '', /actors\/ may not import nodes\//);
  });

  test('the doors themselves and packages pass', async () => {
    assert.deepEqual(
      await problems(
        'nodes/launcher/example.ts',
        [
          "import { openMailbox } from '../../actors/index.js';",
          "import { subjects } from '../../protocol/index.js';",
          "import { pino } from 'pino';",
        ].join('\n'),
      ),
      [],
    );
  });
});
