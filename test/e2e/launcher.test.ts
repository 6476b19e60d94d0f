/**
 * `npm start`'s launcher as a user runs it: it starts a whole edge, serves requests, stops every
 * process on Ctrl-C (SIGINT), and a second start runs the tasks the first accepted but never ran.
 * With `--regions`, `--nodes` and `--edge` it starts a supercluster with a gateway per region and
 * per edge site.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { PROJECT_ROOT } from '../../nodes/launcher/index.js';
import { freePort } from '../harness/nats.js';
import { processAlive } from '../harness/processes.js';

interface Launched {
  pid: number;
  output: () => string;
  exited: Promise<number | null>;
}

async function launch(env: Record<string, string>, args: string[] = []): Promise<Launched> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'nodes/launcher/main.ts', ...args], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  );
  const until = Date.now() + 90_000;
  while (!output.includes('Vigil is running')) {
    if (child.exitCode !== null || Date.now() > until) {
      child.kill('SIGKILL');
      throw new Error(`launcher did not start:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { pid: child.pid!, output: () => output, exited };
}

test('the launcher serves, stops cleanly on Ctrl-C, and keeps accepted tasks across a restart', async () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'vigil-launcher-'));
  const port = await freePort();
  const key = 'launcher-test-key-0123456789';
  const env = { VIGIL_STATE_DIR: stateDir, VIGIL_PORT: String(port), VIGIL_DEMO_KEY: key };
  const base = `http://127.0.0.1:${port}`;
  const headers = { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' };
  try {
    // First run serves only the embedding model, so echo tasks are accepted but cannot run.
    const first = await launch({ ...env, VIGIL_MODELS: 'hash-embed' });
    assert.match(first.output(), new RegExp(`Demo API key \\(tenant "demo"\\): ${key}`));
    assert.match(
      first.output(),
      /curl -s http:\/\/127\.0\.0\.1:\d+\/v1\/models\/ngram-chat\/infer/,
    );
    const embed = await fetch(`${base}/v1/models/hash-embed/infer`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ input: 'hello' }),
    });
    assert.equal(embed.status, 200);
    const ids: string[] = [];
    for (let i = 0; i < 5; i += 1) {
      const res = await fetch(`${base}/v1/models/echo/infer`, {
        method: 'POST',
        headers: { ...headers, Prefer: 'respond-async' },
        body: JSON.stringify({ input: i }),
      });
      assert.equal(res.status, 202);
      ids.push(String(((await res.json()) as { id: string }).id));
    }
    const childPids = [
      ...first.output().matchAll(/(?:nats-server|actor-host|gateway|controller)=(\d+)/g),
    ].map((m) => Number(m[1]));
    assert.equal(
      childPids.length,
      4,
      'the launcher names the pids of nats-server, actor host, gateway and controller',
    );
    assert.match(
      first.output(),
      /Metrics \(Prometheus\): .*gateway=http:\/\/127\.0\.0\.1:\d+\/metrics/,
    );
    process.kill(first.pid, 'SIGINT');
    assert.equal(await first.exited, 0, 'Ctrl-C exits 0');
    assert.match(first.output(), /Vigil stopped\./);
    for (const pid of childPids) assert.equal(processAlive(pid), false, `child ${pid} stopped`);

    // Second run serves every model: the five accepted echo tasks now run.
    const second = await launch(env);
    try {
      for (const [i, id] of ids.entries()) {
        const res = await fetch(`${base}/v1/tasks/${id}`, {
          headers: { ...headers, Prefer: 'wait=20' },
        });
        const body = (await res.json()) as { state: string; result: unknown };
        assert.equal(body.state, 'succeeded');
        assert.deepEqual(body.result, { echo: i });
      }
    } finally {
      process.kill(second.pid, 'SIGINT');
      assert.equal(await second.exited, 0);
    }
  } finally {
    rmSync(stateDir, { recursive: true, force: true });
  }
});

test('npm start -- --regions eu,us --nodes 3 --edge pop1@eu: every gateway serves, Ctrl-C stops every process', async () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'vigil-launcher-regions-'));
  const key = 'launcher-regions-key-0123456789';
  const headers = { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' };
  try {
    const run = await launch(
      {
        VIGIL_STATE_DIR: stateDir,
        // Three gateways: each on a free port (consecutive ones may be taken).
        VIGIL_PORT: '0',
        VIGIL_DEMO_KEY: key,
        VIGIL_MODELS: 'echo',
      },
      ['--regions', 'eu,us', '--nodes', '3', '--edge', 'pop1@eu'],
    );
    try {
      const gateways = [...run.output().matchAll(/^\s+(\S+).*gateway (http:\/\/\S+)/gm)].map(
        (m) => ({
          name: m[1]!,
          url: m[2]!,
        }),
      );
      assert.deepEqual(
        gateways.map((g) => g.name),
        ['eu', 'us', 'pop1'],
      );
      for (const gateway of gateways) {
        const res = await fetch(`${gateway.url}/v1/models/echo/infer`, {
          method: 'POST',
          headers,
          body: JSON.stringify({ input: gateway.name }),
        });
        const body = (await res.json()) as { state: string; region: string };
        assert.equal(res.status, 200, JSON.stringify(body));
        assert.equal(body.region, gateway.name === 'us' ? 'us' : 'eu');
      }
      const servers = [...run.output().matchAll(/nats-server=(\d+)/g)];
      assert.equal(servers.length, 6, 'two regions of three servers');
    } finally {
      const pids = [
        ...run.output().matchAll(/(?:nats-server|nats-leaf|actor-host|gateway|controller)=(\d+)/g),
      ].map((m) => Number(m[1]));
      process.kill(run.pid, 'SIGINT');
      assert.equal(await run.exited, 0);
      for (const pid of pids) assert.equal(processAlive(pid), false, `child ${pid} stopped`);
    }
  } finally {
    rmSync(stateDir, { recursive: true, force: true });
  }
});
