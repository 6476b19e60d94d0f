/**
 * Every program, started as a process: `--help` prints what it accepts and exits 0 without
 * starting anything; an invalid value stops a node at start-up with exit 1 and one JSON log line
 * that names the variable (no stack trace), before it connects to anything; the launcher says
 * the same in one line of its own.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { runProgram as run, type ProgramRun as Run } from '../harness/processes.js';

const node = (name: string) => ['--import', 'tsx', join('nodes', name, 'main.ts')];

/** A start-up that failed: exit 1 and one JSON line naming `variable`, nothing else. */
function assertStoppedNaming(result: Run, variable: string): void {
  assert.equal(result.code, 1, result.stdout + result.stderr);
  assert.equal(result.stderr, '', 'nothing on stderr');
  const lines = result.stdout.trim().split('\n');
  assert.equal(lines.length, 1, `one line, not:\n${result.stdout}`);
  const line = JSON.parse(lines[0]!) as Record<string, unknown>;
  assert.equal(line['level'], 'error');
  assert.match(String(line['msg']), new RegExp(`^invalid configuration: .*${variable}=`));
  assert.ok((line['variables'] as string[]).includes(variable), lines[0]);
  assert.ok(!('err' in line) && !lines[0]!.includes('    at '), 'no stack trace');
}

describe('--help', () => {
  test('each node prints its flags and variables, and exits 0 without starting', async () => {
    const cases: [string, string[]][] = [
      [
        'gateway',
        [
          'VIGIL_GATEWAY_PORT',
          'VIGIL_API_KEYS',
          'VIGIL_LOG_LEVEL',
          'NATS_URL',
          'OTEL_SERVICE_NAME',
        ],
      ],
      ['actor-host', ['VIGIL_MODELS', 'VIGIL_DRAIN_GRACE_MS', 'VIGIL_BREAKER', 'NATS_NKEY']],
      ['controller', ['VIGIL_ALERT_RULES', 'VIGIL_SYS_NATS_NKEY', 'VIGIL_METRICS_PORT']],
      ['provision', ['VIGIL_REGION', 'VIGIL_REPLICAS', 'NATS_CA']],
    ];
    const results = await Promise.all(cases.map(([name]) => run([...node(name), '--help'])));
    results.forEach((result, i) => {
      const [name, variables] = cases[i]!;
      assert.equal(result.code, 0, `${name}: ${result.stderr}`);
      assert.match(result.stdout, /^Usage: /m, name);
      assert.match(result.stdout, /^ {2}--help$/m, name);
      for (const variable of variables) {
        assert.ok(result.stdout.includes(`\n  ${variable}\n`), `${name} --help lists ${variable}`);
      }
      assert.ok(!result.stdout.includes('"msg":"ready"'), `${name} did not start`);
    });
  });

  test('npm start, the drill runner and the CLI print theirs', async () => {
    const [launcher, drill, cli, cliCommand] = await Promise.all([
      run([...node('launcher'), '--help']),
      run([...node('drill'), '--help']),
      run(['scripts/vigil.mjs', '--help']),
      run(['scripts/vigil.mjs', 'help']),
    ]);
    assert.equal(launcher.code, 0, launcher.stderr);
    for (const text of [
      '--regions <a,b>',
      '--nodes <n>',
      '--edge <site@region>',
      'VIGIL_PORT',
      'VIGIL_STATE_DIR',
    ]) {
      assert.ok(launcher.stdout.includes(text), `npm start -- --help lists ${text}`);
    }
    assert.equal(drill.code, 0, drill.stderr);
    assert.match(drill.stdout, /--max-rto <time>/);
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /dlq list \[--model <m>\]/);
    assert.match(cli.stdout, /^ {2}VIGIL_STATE_DIR$/m);
    assert.equal(cliCommand.stdout, cli.stdout, '`help` is `--help` (npx keeps --help for npm)');
  });
});

describe('an invalid value stops the node at start-up', () => {
  const keys = { VIGIL_API_KEYS: 'acme:0123456789abcdef' };

  test('the gateway: a bad log level, a bad port', async () => {
    const [level, port] = await Promise.all([
      run(node('gateway'), { ...keys, VIGIL_LOG_LEVEL: 'loud' }),
      run(node('gateway'), { ...keys, VIGIL_GATEWAY_PORT: 'abc' }),
    ]);
    assertStoppedNaming(level, 'VIGIL_LOG_LEVEL');
    assertStoppedNaming(port, 'VIGIL_GATEWAY_PORT');
    assert.match(port.stdout, /VIGIL_GATEWAY_PORT=abc must be an integer from 0 to 65535/);
  });

  test('the actor host, the controller and provisioning; secrets stay secret', async () => {
    const [host, controller, provision, secret] = await Promise.all([
      run(node('actor-host'), { VIGIL_DRAIN_GRACE_MS: 'soon' }),
      run(node('controller'), { VIGIL_CONTROLLER_LEASE_MS: '5' }),
      run(node('provision'), { VIGIL_REGION: 'eu', VIGIL_REPLICAS: '7' }),
      run(node('gateway'), { ...keys, VIGIL_ADMIN_KEYS: 'hunter2' }),
    ]);
    assertStoppedNaming(host, 'VIGIL_DRAIN_GRACE_MS');
    assertStoppedNaming(controller, 'VIGIL_CONTROLLER_LEASE_MS');
    assertStoppedNaming(provision, 'VIGIL_REPLICAS');
    assert.equal(secret.code, 1);
    assert.match(secret.stdout, /VIGIL_ADMIN_KEYS/);
    assert.ok(!secret.stdout.includes('hunter2'), secret.stdout);
  });

  test('an argument a node does not take exits 2', async () => {
    const result = await run([...node('gateway'), '--port', '80'], keys);
    assert.equal(result.code, 2);
    assert.match(result.stdout, /gateway takes no argument '--port'/);
  });

  test('npm start: one line naming the flag or variable, exit 1; an unknown flag, exit 2', async () => {
    const [bad, unknown] = await Promise.all([
      run([...node('launcher'), '--nodes', '9'], { VIGIL_PORT: 'http' }),
      run([...node('launcher'), '--bogus']),
    ]);
    assert.equal(bad.code, 1);
    assert.equal(
      bad.stdout,
      'vigil: invalid configuration: VIGIL_PORT=http must be an integer from 0 to 65535; ' +
        '--nodes=9 must be an integer from 1 to 5\n',
    );
    assert.equal(unknown.code, 2);
    assert.match(unknown.stdout, /--bogus.*npm start -- --help/);
  });
});
