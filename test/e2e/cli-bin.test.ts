/**
 * The `vigil` bin (`scripts/vigil.mjs`, package.json "bin") against a real provisioned
 * nats-server: `--version` is the package's, and `--json` output is JSON alone, straight from the
 * entry and through `npx vigil` (npm exec), so it pipes into jq with no npm banner before it.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect } from '@nats-io/transport-node';
import { PROJECT_ROOT } from '../../nodes/launcher/index.js';
import { runProgram as run } from '../harness/processes.js';
import { provisionRegion } from '../../nodes/provision/index.js';
import { startTestNats, type TestNats } from '../harness/nats.js';

const version = (
  JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }
).version;

/** npm's own CLI, when the tests run under npm (`npm test`), to run `npx vigil` with. */
const npmCli = process.env['npm_execpath'];

const bin = (...args: string[]) => ['scripts/vigil.mjs', ...args];
/** `npx --no vigil ...`: `--no` refuses to fetch anything, so only the project's bin can run. */
const npx = (...args: string[]) => [npmCli ?? 'npm', 'exec', '--no', '--', 'vigil', ...args];

describe('the vigil bin', () => {
  let nats: TestNats;
  let env: Record<string, string>;

  before(async () => {
    nats = await startTestNats();
    const nc = await connect({ servers: nats.url });
    await provisionRegion(nc, { region: 'local', replicas: 1 }, []);
    await nc.close();
    env = { NATS_URL: nats.url };
  });
  after(async () => {
    await nats?.[Symbol.asyncDispose]();
  });

  test("--version and version print the package's version", async () => {
    const [flag, command] = await Promise.all([run(bin('--version')), run(bin('version'))]);
    assert.equal(flag.code, 0, flag.stderr);
    assert.equal(flag.stdout, `${version}\n`);
    assert.equal(command.stdout, `${version}\n`);
  });

  test('--json output is JSON and nothing else', async () => {
    const [letters, actors] = await Promise.all([
      run(bin('dlq', 'list', '--json'), env),
      run(bin('actors', '--json'), env),
    ]);
    assert.equal(letters.code, 0, letters.stderr);
    assert.deepEqual(JSON.parse(letters.stdout), []);
    assert.equal(actors.code, 0, actors.stderr);
    assert.ok(Array.isArray(JSON.parse(actors.stdout)), actors.stdout);
  });

  test(
    "npx vigil runs the project's bin: JSON alone on stdout",
    { skip: npmCli === undefined && 'not run by npm' },
    async () => {
      const letters = await run(npx('dlq', 'list', '--json'), env);
      assert.equal(letters.code, 0, letters.stderr);
      assert.deepEqual(JSON.parse(letters.stdout), [], 'no npm banner before the JSON');
      const versionRun = await run(npx('--version'));
      assert.equal(versionRun.stdout, `${version}\n`, 'the flag reaches the CLI, not npm');
      const helpRun = await run(npx('--help'));
      assert.match(helpRun.stdout, /^Usage: npx vigil <command>/m);
    },
  );
});
