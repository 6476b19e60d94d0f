/**
 * The controller in a real edge, as its own least-privilege NATS user: a hung model raises the
 * stuck-actor alert (on NATS and at a webhook the test runs) and its rule restarts the model's
 * executor within the rule's window; with two controllers, kill -9 of the leader hands the lease
 * to the standby within a lease and one renewal, and a firing's action runs once in all.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  actorHeartbeatSchema,
  assetNames,
  decodeAs,
  Role,
  type ActorHeartbeat,
} from '../../protocol/index.js';
import {
  LEADER_KEY,
  renewIntervalMs,
  type ActionRecord,
  type AlertEvent,
  type LeaseRecord,
  type RolloutHold,
} from '../../nodes/controller/index.js';
import { startNode, type NodeProcess } from '../../nodes/launcher/index.js';
import { startTestEdge, waitFor, type TestEdge } from '../harness/edge.js';

type Json = Record<string, unknown>;

const HEARTBEAT_MS = 300;
const EVAL_MS = 200;
/** A lease renewal's round trip on loopback, at most, ms. */
const RENEWAL_RTT_ALLOWANCE_MS = 50;

/** Waits for `find` (synchronous) to find something. */
function seen<T>(what: string, find: () => T | undefined): Promise<T> {
  return waitFor(what, () => Promise.resolve(find()));
}

/** A rules file in a temp dir; removed by the caller. */
function writeRules(rules: Json[]): { dir: string; file: string } {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-rules-'));
  const file = join(dir, 'rules.json');
  writeFileSync(file, JSON.stringify({ rules }));
  return { dir, file };
}

/** A webhook receiver on a random loopback port, keeping every alert it was sent. */
async function startWebhook(): Promise<{ url: string; received: AlertEvent[]; server: Server }> {
  const received: AlertEvent[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      received.push(JSON.parse(body) as AlertEvent);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/alerts`, received, server };
}

/** Every alert published on NATS, as the admin user sees them. */
function collectAlerts(nc: NatsConnection): AlertEvent[] {
  const alerts: AlertEvent[] = [];
  nc.subscribe('vigil.alert.>', {
    callback: (_err, msg) => {
      alerts.push(msg.json<AlertEvent>());
    },
  });
  return alerts;
}

/** Every recovery action recorded in the control log so far. */
async function actionRecords(nc: NatsConnection): Promise<ActionRecord[]> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(assetNames.controlLogStream);
  const out: ActionRecord[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && seq > 0; seq++) {
    const msg = await jsm.streams.getMessage(assetNames.controlLogStream, { seq });
    if (msg) out.push(msg.json<ActionRecord>());
  }
  return out;
}

async function echoBeat(edge: TestEdge, nc: NatsConnection): Promise<ActorHeartbeat | undefined> {
  const kv = await new Kvm(nc).open(assetNames.actorBucket(edge.region));
  for await (const key of await kv.keys('echo.*')) {
    const entry = await kv.get(key);
    if (entry?.operation === 'PUT') return decodeAs(actorHeartbeatSchema, entry.value, 'beat');
  }
  return undefined;
}

function startController(
  edge: TestEdge,
  rulesFile: string,
  env: Record<string, string> = {},
): Promise<NodeProcess> {
  return startNode('controller', {
    env: {
      NATS_URL: edge.nats.url,
      VIGIL_REGION: edge.region,
      VIGIL_LOG_LEVEL: 'warn',
      ...edge.credentials.natsEnvFor(Role.Controller),
      VIGIL_ALERT_RULES: rulesFile,
      VIGIL_CONTROLLER_EVAL_MS: String(EVAL_MS),
      ...env,
    },
  });
}

describe('controller', () => {
  test('serves Prometheus metrics: JetStream storage per stream and per server', async () => {
    const edge = await startTestEdge({ actorHost: false });
    const rules = writeRules([]);
    const sys = edge.credentials.user('sys');
    const controller = await startController(edge, rules.file, {
      VIGIL_METRICS_PORT: '0',
      VIGIL_SYS_NATS_NKEY: sys.seedFile,
      VIGIL_SYS_NATS_INBOX_PREFIX: sys.inboxPrefix,
    });
    try {
      const url = String(controller.ready['metricsUrl']);
      const scrape = async () => (await fetch(url)).text();
      const queued = (text: string): number => {
        const stream = assetNames.requestStream(edge.region);
        const line = text
          .split('\n')
          .find((l) => l.startsWith('vigil_jetstream_stream_messages') && l.includes(stream));
        return line ? Number(line.split(' ').at(-1)) : -1;
      };
      assert.equal(queued(await scrape()), 0, 'the request stream is reported, empty');
      for (let i = 0; i < 3; i++) {
        const res = await edge.request('/v1/models/echo/infer', {
          method: 'POST',
          body: JSON.stringify({ input: i }),
          headers: { Prefer: 'respond-async' },
        });
        assert.equal(res.status, 202);
      }
      assert.equal(queued(await scrape()), 3, 'three tasks wait in the request stream');
      const text = await scrape();
      assert.match(text, /vigil_nats_connected\{[^}]*controller[^}]*\} 1/);
      // The server's store dir: something used (the streams above), under its limit.
      const storage = (name: string): number =>
        Number(
          text
            .split('\n')
            .find((l) => l.startsWith(name))
            ?.split(' ')
            .at(-1) ?? NaN,
        );
      const used = storage('vigil_nats_server_storage_used');
      const limit = storage('vigil_nats_server_storage_limit');
      assert.ok(used > 0 && used < limit, `storage used ${used} of ${limit}`);
    } finally {
      await controller.stop();
      rmSync(rules.dir, { recursive: true, force: true });
      await edge.stop();
    }
  });

  test('a stuck actor raises its alert and is restarted by its rule within the window', async () => {
    const forMs = 2_000;
    const rules = writeRules([
      {
        name: 'actor-stuck',
        when: { metric: 'heartbeat.stuck' },
        forMs,
        severity: 'critical',
        action: { type: 'restart-actor' },
        cooldownMs: 60_000,
      },
    ]);
    const webhook = await startWebhook();
    const edge = await startTestEdge({
      assets: { heartbeatIntervalMs: HEARTBEAT_MS },
      actorEnv: {
        VIGIL_HEARTBEAT_MS: String(HEARTBEAT_MS),
        VIGIL_MODELS: 'echo',
        VIGIL_ISOLATION: 'child-process',
        VIGIL_ECHO_FAULTS: JSON.stringify({ enabled: true, maxDelayMs: 120_000 }),
        // The restarted run counts as the task's only attempt: it is dead-lettered, the actor
        // goes idle, and the alert resolves.
        VIGIL_MAX_ATTEMPTS: '1',
      },
    });
    let controller: NodeProcess | undefined;
    try {
      const nc = await edge.connect();
      const alerts = collectAlerts(nc);
      controller = await startController(edge, rules.file, {
        VIGIL_CONTROLLER_LEASE_MS: '1500',
        VIGIL_ALERT_WEBHOOK: webhook.url,
      });
      const before = await waitFor('a heartbeat', () => echoBeat(edge, nc));
      // Busy is not stuck: two callers keep the actor in flight for longer than the rule's
      // window, each task finishing in 150 ms; the rule must not fire.
      const busyUntil = Date.now() + forMs + 4 * HEARTBEAT_MS;
      const busy = async (): Promise<number> => {
        let done = 0;
        while (Date.now() < busyUntil) {
          const r = await edge.request('/v1/models/echo/infer', {
            method: 'POST',
            body: JSON.stringify({ input: 'busy', params: { delay_ms: 150 } }),
          });
          assert.equal(r.status, 200, await r.text());
          done += 1;
        }
        return done;
      };
      const busyRuns = (await Promise.all([busy(), busy()])).reduce((a, b) => a + b, 0);
      assert.deepEqual(
        alerts.filter((a) => a.rule === 'actor-stuck'),
        [],
        `no stuck alert while busy (${busyRuns} tasks of 150 ms)`,
      );
      const res = await edge.request('/v1/models/echo/infer', {
        method: 'POST',
        body: JSON.stringify({ input: 'hang', params: { delay_ms: 120_000 } }),
        headers: { Prefer: 'respond-async' },
      });
      assert.equal(res.status, 202);
      const submittedAt = Date.now();
      const after = await waitFor(
        'the executor restarted by the rule',
        async () => {
          const b = await echoBeat(edge, nc);
          const running = b?.state === 'running' && b.pid > 0;
          return running && b.restarts > before.restarts && b.pid !== before.pid ? b : undefined;
        },
        forMs + 15_000,
      );
      const restartMs = Date.now() - submittedAt;
      console.log(
        `stuck actor: restarted ${restartMs} ms after the hung task was submitted ` +
          `(rule window ${forMs} ms; pid ${before.pid} -> ${after.pid})`,
      );
      assert.ok(restartMs >= forMs, 'not restarted before the condition held for the window');
      assert.ok(restartMs <= forMs + 5_000, `restarted within the window plus 5 s: ${restartMs}`);

      const firing = await seen('the firing alert on NATS', () =>
        alerts.find((a) => a.rule === 'actor-stuck' && a.status === 'firing'),
      );
      assert.equal(firing.severity, 'critical');
      assert.equal(firing.subject.model, 'echo');
      assert.equal(firing.subject.host, before.host);
      assert.equal(firing.controllerId, controller.ready['controllerId']);
      await seen('the firing alert at the webhook', () =>
        webhook.received.find((a) => a.rule === 'actor-stuck' && a.status === 'firing'),
      );
      const resolved = await seen('the resolved alert at the webhook', () =>
        webhook.received.find((a) => a.rule === 'actor-stuck' && a.status === 'resolved'),
      );
      assert.ok(resolved.at >= firing.at);

      // The record is written when the host has answered, which may be after the alert resolved.
      await waitFor('the action record', async () =>
        (await actionRecords(nc)).length > 0 ? true : undefined,
      );
      await new Promise((resolve) => setTimeout(resolve, 3 * EVAL_MS));
      const records = await actionRecords(nc);
      assert.equal(records.length, 1, 'one action for one firing');
      const record = records[0]!;
      assert.equal(record.action, 'restart-actor');
      assert.equal(record.ok, true, JSON.stringify(record.detail));
      assert.equal(record.detail['pid'], after.pid, 'the host answered with the new executor');
      assert.equal(record.controllerId, controller.ready['controllerId']);
      assert.ok(record.startedAt - submittedAt >= forMs);
    } finally {
      await controller?.stop();
      await edge.stop();
      webhook.server.close();
      rmSync(rules.dir, { recursive: true, force: true });
    }
  });

  test('drain-host: the host drains and exits 0 as on SIGTERM, and is not then reported stale', async () => {
    const rules = writeRules([
      {
        name: 'drain-echo',
        when: { metric: 'heartbeat.state', op: '==', value: 'running' },
        forMs: 0,
        severity: 'warning',
        action: { type: 'drain-host' },
      },
      { name: 'echo-stale', when: { metric: 'heartbeat.stale' }, forMs: 0, severity: 'critical' },
    ]);
    const edge = await startTestEdge({
      assets: { heartbeatIntervalMs: HEARTBEAT_MS },
      actorEnv: { VIGIL_HEARTBEAT_MS: String(HEARTBEAT_MS), VIGIL_MODELS: 'echo' },
    });
    let controller: NodeProcess | undefined;
    try {
      const nc = await edge.connect();
      const alerts = collectAlerts(nc);
      const host = edge.actorHosts[0]!;
      // Commands the host cannot carry out are answered, not dropped or half done.
      const command = async (name: string, body: string): Promise<Json> =>
        (
          await nc.request(`vigil.ctl.${edge.region}.${String(host.ready['host'])}.${name}`, body)
        ).json<Json>();
      assert.deepEqual(await command('restart', JSON.stringify({ model: 'nope' })), {
        ok: false,
        error: "model 'nope' is not served here",
      });
      assert.deepEqual(await command('restart', '{"model": 7}'), {
        ok: false,
        error: 'unreadable command',
      });
      assert.equal((await command('reboot', '{}'))['ok'], false);
      controller = await startController(edge, rules.file);
      const exit = await Promise.race([
        host.exited,
        new Promise((resolve) => setTimeout(() => resolve('still running'), 15_000)),
      ]);
      assert.equal(exit, 0, 'the host drained and exited 0');
      await waitFor('the action record', async () =>
        (await actionRecords(nc)).length > 0 ? true : undefined,
      );
      const [record] = await actionRecords(nc);
      assert.equal(record?.action, 'drain-host');
      assert.equal(record?.ok, true, JSON.stringify(record?.detail));
      assert.equal(record?.subject.host, host.ready['host']);
      // Its last beat says draining: the drain alert resolves and no stale alert follows.
      await seen('the drain alert resolved', () =>
        alerts.find((a) => a.rule === 'drain-echo' && a.status === 'resolved'),
      );
      await new Promise((resolve) => setTimeout(resolve, 4 * HEARTBEAT_MS));
      assert.deepEqual(
        alerts.filter((a) => a.rule === 'echo-stale'),
        [],
      );
    } finally {
      await controller?.stop();
      await edge.stop();
      rmSync(rules.dir, { recursive: true, force: true });
    }
  });

  const KEEP_FIRING_MS = 1_000;

  test('kill -9 of the leader: the standby takes over within a lease and one renewal; one action in all', async () => {
    const leaseMs = 2_000;
    const rules = writeRules([
      {
        // Holds for as long as the actor runs: it fires once, and its action must run once.
        name: 'echo-running',
        when: { metric: 'heartbeat.state', op: '==', value: 'running' },
        forMs: 0,
        severity: 'info',
        action: { type: 'hold-rollout' },
        cooldownMs: 600_000,
        keepFiringForMs: KEEP_FIRING_MS,
      },
    ]);
    const edge = await startTestEdge({
      assets: { heartbeatIntervalMs: HEARTBEAT_MS },
      actorEnv: { VIGIL_HEARTBEAT_MS: String(HEARTBEAT_MS), VIGIL_MODELS: 'echo' },
    });
    const controllers: NodeProcess[] = [];
    try {
      const nc = await edge.connect();
      const alerts = collectAlerts(nc);
      const control = await new Kvm(nc).open(assetNames.controlBucket);
      const holder = async (): Promise<string | undefined> => {
        const entry = await control.get(LEADER_KEY);
        return entry?.operation === 'PUT' ? entry.json<LeaseRecord>().controllerId : undefined;
      };
      const env = { VIGIL_CONTROLLER_LEASE_MS: String(leaseMs) };
      const first = await startController(edge, rules.file, env);
      controllers.push(first);
      const firstId = String(first.ready['controllerId']);
      await waitFor('the first controller to lead', async () =>
        (await holder()) === firstId ? true : undefined,
      );
      const second = await startController(edge, rules.file, env);
      controllers.push(second);
      const secondId = String(second.ready['controllerId']);
      await waitFor('the action of the first leader', async () =>
        (await actionRecords(nc)).length > 0 ? true : undefined,
      );
      // Both run for a while: the standby must not act.
      await new Promise((resolve) => setTimeout(resolve, 5 * EVAL_MS));

      // Watch the lease from before the kill, to time the takeover to the update itself.
      const updates = await control.watch({ key: LEADER_KEY });
      const killedAt = Date.now();
      first.signal('SIGKILL');
      let takeoverMs = -1;
      const deadline = killedAt + leaseMs * 3;
      for await (const entry of updates) {
        if (entry.operation === 'PUT' && entry.json<LeaseRecord>().controllerId === secondId) {
          takeoverMs = Date.now() - killedAt;
          break;
        }
        if (Date.now() > deadline) break;
      }
      updates.stop();
      const bound = leaseMs + renewIntervalMs(leaseMs);
      console.log(`leader killed: standby took over after ${takeoverMs} ms (bound ${bound} ms)`);
      assert.ok(takeoverMs > 0, 'the standby took over');
      // The last renewal was sent at most one renewal interval (plus its round trip, given
      // RENEWAL_RTT_ALLOWANCE_MS) before the kill, and the standby waits a lease from seeing it.
      assert.ok(
        takeoverMs >= leaseMs - renewIntervalMs(leaseMs) - RENEWAL_RTT_ALLOWANCE_MS,
        `not before the lease could have expired: ${takeoverMs} ms`,
      );
      assert.ok(takeoverMs <= bound, `takeover within lease + one renewal: ${takeoverMs} ms`);

      // The new leader adopts the firing alert: no second firing, no second action.
      await new Promise((resolve) => setTimeout(resolve, 5 * EVAL_MS));
      const records = await actionRecords(nc);
      assert.deepEqual(
        records.map((r) => [r.action, r.controllerId, r.ok]),
        [['hold-rollout', firstId, true]],
      );
      const hold = await control.get('rollout.echo.hold');
      assert.deepEqual(
        hold?.json<RolloutHold>().holders.map((h) => [h.rule, h.by]),
        [['echo-running', firstId]],
      );
      assert.equal(alerts.filter((a) => a.status === 'firing').length, 1);

      // The new leader acts: a drained host is no longer running, and the alert resolves once
      // the condition has stayed clear for keepFiringForMs.
      const stoppingAt = Date.now();
      await edge.actorHosts[0]!.stop();
      const resolved = await seen('the alert resolved by the new leader', () =>
        alerts.find((a) => a.status === 'resolved'),
      );
      assert.equal(resolved.controllerId, secondId);
      assert.ok(
        resolved.at - stoppingAt >= KEEP_FIRING_MS,
        `kept firing ${KEEP_FIRING_MS} ms after the condition cleared: ${resolved.at - stoppingAt} ms`,
      );
      assert.equal(alerts.filter((a) => a.status === 'firing').length, 1);
      // Resolving lifted the hold the first leader wrote, and the log says who lifted it.
      assert.equal((await control.get('rollout.echo.hold'))?.operation, 'DEL');
      assert.deepEqual(
        (await actionRecords(nc)).map((r) => [r.action, r.phase, r.controllerId, r.ok]),
        [
          ['hold-rollout', 'apply', firstId, true],
          ['hold-rollout', 'lift', secondId, true],
        ],
      );
    } finally {
      await Promise.allSettled(controllers.map((c) => c.stop()));
      await edge.stop();
      rmSync(rules.dir, { recursive: true, force: true });
    }
  });
});
