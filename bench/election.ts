/**
 * The server's own share of `kill-nats-node`: how long nats-server takes to elect new leaders for
 * a region's Raft groups after the request stream's leader is SIGKILLed, measured with bare
 * clients and no Vigil node in the way.
 *
 *   node --import tsx bench/election.ts [rounds=10]
 *
 * Each round starts the drill's region (three servers, `provisionRegion` with three replicas), runs
 * a bare load shaped like the drill's (publishes with a message id at 20/s; a puller that writes a
 * task record and acks each message), kills the server leading `VIGIL_REQ_EU`, and reports:
 * - from the servers' own log lines, when each group the dead server led had a new leader (the
 *   request stream, the model's consumer, the task bucket, the JetStream meta group);
 * - from a bare client polling every 20 ms, when a publish to the request stream was
 *   acknowledged again, and when a KV write to the task bucket succeeded again.
 * Nothing is started twice at once; every process is stopped by PID at the end of its round.
 */
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, nkeyAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { createBuiltinModels } from '../actors/index.js';
import { readNkeySeed } from '../nodes/common/index.js';
import {
  accountsConfig,
  generateNatsCredentials,
  startSupercluster,
  type NatsServerProcess,
} from '../nodes/launcher/index.js';
import { provisionRegion } from '../nodes/provision/index.js';
import { assetNames, ensureModelConsumer, Priority, subjects } from '../protocol/index.js';

const REGION = 'eu';
const MODEL = 'echo';
const POLL_MS = 20;
const OBSERVE_MS = 15_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Leader lines nats-server writes (jetstream_cluster.go), with the group they name. */
const LEADER_LINE =
  /^\[\d+\] (\d{4})\/(\d\d)\/(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{6}) \[INF\] (?:JetStream cluster new (stream|consumer) leader for '[^'>]*> ([^']*)'|(Self is new JetStream cluster metadata leader))/;

interface Round {
  killed: string;
  led: string[];
  /** ms from the kill to the new leader of each group the dead server led (server logs). */
  elected: Record<string, number>;
  /** ms from the kill to the first acknowledged publish sent after it (bare client). */
  publishBackMs: number | null;
  /** ms from the kill to the first task-bucket write that succeeded (bare client). */
  kvBackMs: number | null;
}

/** Parses `[pid] 2026/12/07 14:11:15.123456 [INF] ...` lines into (group, epoch ms). */
function leaderEvents(logFile: string): { group: string; at: number }[] {
  const events: { group: string; at: number }[] = [];
  for (const line of readFileSync(logFile, 'utf8').split('\n')) {
    const m = LEADER_LINE.exec(line);
    if (!m) continue;
    const [, y, mo, d, h, mi, s, us] = m;
    const at =
      new Date(+y!, +mo! - 1, +d!, +h!, +mi!, +s!).getTime() + Math.floor(Number(us) / 1000);
    const group = m[10] ? 'meta' : `${m[8]} ${m[9]!.replace(/ > /g, '/')}`;
    events.push({ group, at });
  }
  return events;
}

/** The groups a server leads, as the same names the log lines give. */
async function groupsLedBy(jsm: JetStreamManager, server: string): Promise<string[]> {
  const led: string[] = [];
  const stream = assetNames.requestStream(REGION);
  const bucket = `KV_${assetNames.taskBucket(REGION)}`;
  if ((await jsm.streams.info(stream)).cluster?.leader === server) led.push(`stream ${stream}`);
  const consumer = assetNames.modelConsumer(MODEL);
  if ((await jsm.consumers.info(stream, consumer)).cluster?.leader === server)
    led.push(`consumer ${stream}/${consumer}`);
  if ((await jsm.streams.info(bucket)).cluster?.leader === server) led.push(`stream ${bucket}`);
  return led;
}

/** A bare version of the drill's traffic: publishes at 20/s, a puller that records and acks. */
function bareLoad(nc: NatsConnection): { stop: () => Promise<void> } {
  const js = jetstream(nc, { timeout: 2_000 });
  let stopped = false;
  let n = 0;
  const publisher = (async () => {
    while (!stopped) {
      const id = `load-${n++}`;
      void js
        .publish(subjects.request(REGION, MODEL, Priority.Interactive, id), new Uint8Array(8), {
          msgID: id,
        })
        .catch(() => undefined);
      await sleep(50);
    }
  })();
  const puller = (async () => {
    const kv = await new Kvm(js).open(assetNames.taskBucket(REGION));
    const consumer = await js.consumers.get(
      assetNames.requestStream(REGION),
      assetNames.modelConsumer(MODEL),
    );
    while (!stopped) {
      try {
        for await (const msg of await consumer.fetch({ max_messages: 8, expires: 2_000 })) {
          const id = msg.subject.split('.').pop()!;
          await kv.put(id, new Uint8Array(8)).catch(() => undefined);
          msg.ack();
        }
      } catch {
        await sleep(100);
      }
    }
  })();
  return {
    async stop() {
      stopped = true;
      await Promise.allSettled([publisher, puller]);
    },
  };
}

/** Polls `attempt` every {@link POLL_MS} from `from` on; ms to the first success, or null. */
async function firstSuccess(from: number, attempt: () => Promise<unknown>): Promise<number | null> {
  while (Date.now() - from < OBSERVE_MS) {
    const sentAt = Date.now();
    try {
      await attempt();
      return sentAt - from;
    } catch {
      await sleep(Math.max(0, POLL_MS - (Date.now() - sentAt)));
    }
  }
  return null;
}

async function round(root: string): Promise<Round> {
  const credentials = generateNatsCredentials({ outDir: join(root, 'creds'), regions: [REGION] });
  const admin = credentials.user('admin');
  const auth = {
    authenticator: nkeyAuthenticator(readNkeySeed(admin.seedFile, 'admin seed')),
    inboxPrefix: admin.inboxPrefix,
  };
  const cluster = await startSupercluster({
    regions: [{ name: REGION, nodes: 3 }],
    rootDir: join(root, 'nats'),
    accountsConfig: accountsConfig(credentials),
    connectOptions: auth,
  });
  const servers = cluster.regions.get(REGION)!;
  const nc = await connect({ ...auth, servers: cluster.urlsOf(REGION), reconnectTimeWait: 100 });
  try {
    await provisionRegion(
      nc,
      { region: REGION, replicas: 3, placementCluster: REGION },
      createBuiltinModels(),
    );
    await ensureModelConsumer(await jetstreamManager(nc), { region: REGION, model: MODEL });
    const load = bareLoad(nc);
    await sleep(3_000);
    const jsm = await jetstreamManager(nc, { timeout: 1_000 });
    const stream = assetNames.requestStream(REGION);
    const leader = (await jsm.streams.info(stream)).cluster!.leader!;
    const victim = servers.find((s) => s.options.serverName === leader)!;
    const led = await groupsLedBy(jsm, leader);
    const meta = await metaLeader(servers.find((s) => s !== victim)!);
    if (meta === leader) led.push('meta');
    const killedAt = Date.now();
    await victim.kill('SIGKILL');
    const probe = await connect({
      ...auth,
      servers: servers.filter((s) => s !== victim).map((s) => s.url),
    });
    const pjs = jetstream(probe, { timeout: 500 });
    const kv = await new Kvm(pjs).open(assetNames.taskBucket(REGION));
    const [publishBackMs, kvBackMs] = await Promise.all([
      firstSuccess(killedAt, () =>
        pjs.publish(
          subjects.request(REGION, MODEL, Priority.Interactive, `probe-${Date.now()}`),
          undefined,
        ),
      ),
      firstSuccess(killedAt, () => kv.put(`probe-${Date.now()}`, new Uint8Array(1))),
    ]);
    // Every group the dead server led has its own election timer: wait for the last one.
    let elected: Record<string, number> = {};
    while (Date.now() - killedAt < OBSERVE_MS) {
      elected = electedSince(
        servers.filter((x) => x !== victim),
        killedAt,
        led,
      );
      if (Object.keys(elected).length === led.length) break;
      await sleep(200);
    }
    await load.stop();
    await probe.close();
    return { killed: leader, led, elected, publishBackMs, kvBackMs };
  } finally {
    await nc.close().catch(() => undefined);
    await cluster.stop();
  }
}

/** ms from `since` to the first leader line of each of `groups`, from the servers' logs. */
function electedSince(
  servers: readonly NatsServerProcess[],
  since: number,
  groups: readonly string[],
): Record<string, number> {
  const elected: Record<string, number> = {};
  for (const s of servers) {
    for (const e of leaderEvents(s.options.logFile!)) {
      if (e.at < since || !groups.includes(e.group)) continue;
      elected[e.group] = Math.min(elected[e.group] ?? Infinity, e.at - since);
    }
  }
  return elected;
}

async function metaLeader(server: NatsServerProcess): Promise<string | undefined> {
  const res = await fetch(`${server.monitorUrl}/jsz`);
  return ((await res.json()) as { meta_cluster?: { leader?: string } }).meta_cluster?.leader;
}

const quantile = (xs: number[], q: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];

async function main(): Promise<void> {
  const rounds = Number(process.argv[2] ?? 10);
  const results: Round[] = [];
  for (let i = 0; i < rounds; i++) {
    const root = mkdtempSync(join(tmpdir(), 'vigil-election-'));
    try {
      const r = await round(root);
      results.push(r);
      console.log(JSON.stringify({ round: i + 1, ...r }));
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  }
  const stats = (name: string, xs: number[]) =>
    xs.length &&
    console.log(
      `${name}: n=${xs.length} min ${Math.min(...xs)} p50 ${quantile(xs, 0.5)} max ${Math.max(...xs)} ms`,
    );
  const streamName = `stream ${assetNames.requestStream(REGION)}`;
  stats(
    'request stream elected',
    results.flatMap((r) => (r.elected[streamName] === undefined ? [] : [r.elected[streamName]])),
  );
  stats(
    'publish acknowledged again',
    results.flatMap((r) => (r.publishBackMs === null ? [] : [r.publishBackMs])),
  );
  stats(
    'every group the dead server led elected',
    results.map((r) => Math.max(...Object.values(r.elected))),
  );
}

await main();
