// `npm test`: every test file under test/ (and the long runs' own unit tests beside their code in
// long-runs/) through Node's own test runner, one file at a time (the suites start real
// nats-server and node processes; two cores do not run two suites well).
// Arguments narrow the run: `npm test -- e2e` runs the files whose path contains "e2e".
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const filters = process.argv.slice(2);

function find(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return find(path);
    return entry.name.endsWith('.test.ts') ? [relative(root, path)] : [];
  });
}

const files = [...find(join(root, 'test')), ...find(join(root, 'long-runs'))]
  .filter((file) => filters.length === 0 || filters.some((f) => file.includes(f)))
  .sort();
if (files.length === 0) {
  console.error(`no test files match ${filters.join(' ')}`);
  process.exit(1);
}
const result = spawnSync(
  process.execPath,
  [
    '--import',
    'tsx',
    '--test',
    '--test-concurrency=1',
    '--test-timeout=300000',
    // A file whose tests have all finished exits even if a handle is left behind. Once in CI,
    // test/integration/executors.test.ts passed every test and then kept a worker thread alive
    // (not reproduced in the runs since): without this the whole run waited for ever.
    '--test-force-exit',
    '--test-reporter=spec',
    ...files,
  ],
  { cwd: root, stdio: 'inherit' },
);
process.exit(result.status ?? 1);
