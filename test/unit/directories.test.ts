/**
 * Directories named by flags and settings: made level by level, and a path that cannot be made
 * fails at once with the level's own error, also where Node's recursive mkdir spins for ever.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ConfigError, makeDirectory, makeNamedDirectory } from '../../nodes/common/index.js';

const scratch = mkdtempSync(join(tmpdir(), 'vigil-directories-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

describe('makeDirectory', () => {
  test('makes every missing level with the mode, and an existing directory is fine', () => {
    const deep = join(scratch, 'a', 'b', 'c');
    makeDirectory(deep, 0o700);
    for (const dir of [join(scratch, 'a'), join(scratch, 'a', 'b'), deep]) {
      assert.equal(statSync(dir).mode & 0o777, 0o700, dir);
    }
    makeDirectory(deep, 0o700);
    makeDirectory(join(scratch, 'a', '..', 'a', 'b'));
    assert.ok(existsSync(deep));
  });

  test('a file in the way, or a file as a parent, is refused with its own error', () => {
    const file = join(scratch, 'file');
    writeFileSync(file, 'x');
    assert.throws(() => makeDirectory(file), { code: 'EEXIST' });
    assert.throws(() => makeDirectory(join(file, 'sub', 'deeper')), { code: 'ENOTDIR' });
  });

  test('under /proc, where the recursive mkdir of Node spins for ever, it fails at once', (t) => {
    if (!existsSync('/proc/self')) return t.skip('no procfs here');
    const started = performance.now();
    assert.throws(() => makeDirectory('/proc/vigil-made-up/reports'), { code: 'ENOENT' });
    t.diagnostic(`failed in ${(performance.now() - started).toFixed(2)} ms`);
  });

  test('a named directory that cannot be made is a ConfigError naming what and where', () => {
    const file = join(scratch, 'named-file');
    writeFileSync(file, 'x');
    assert.throws(
      () => makeNamedDirectory('--report', join(file, 'r')),
      (err: unknown) =>
        err instanceof ConfigError &&
        err.message.startsWith(`--report ${join(file, 'r')} cannot be made: ENOTDIR`),
    );
  });
});
