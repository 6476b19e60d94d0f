/**
 * The authorization matrix: every role against every operation, on a real nats-server running
 * the generated accounts (protocol/permissions.ts, nodes/launcher/nats-accounts.ts), with two
 * provisioned regions. An allowed operation must succeed; a denied one must be refused with a
 * permissions violation, and the admin then checks that nothing was stored. Also: connections
 * without credentials or with an unknown key are refused, TLS works with `NATS_CA`, and an edge
 * site's leaf link carries into its hub only what the site needs, whatever the site's server
 * puts on the wire.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AckPolicy, jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { createUser } from '@nats-io/nkeys';
import { Svcm } from '@nats-io/services';
import {
  AuthorizationError,
  connect,
  NoRespondersError,
  PermissionViolationError,
  type NatsConnection,
} from '@nats-io/transport-node';
import {
  assetNames,
  createDeadLetterAdmin,
  decode,
  encode,
  ensureModelConsumer,
  inboxPrefixOf,
  newTaskId,
  Priority,
  Role,
  subjects,
  userName,
} from '../../protocol/index.js';
import { natsAuthOptions, natsOptionsFromEnv, readNkeySeed } from '../../nodes/common/index.js';
import {
  accountsConfig,
  generateNatsCredentials,
  type NatsCredentials,
} from '../../nodes/launcher/index.js';
import { provisionRegion } from '../../nodes/provision/index.js';
import { startTestNats, type TestNats } from '../harness/nats.js';
import { openRawLeafLink } from '../harness/raw-leaf.js';
import { startTestRegions, type TestRegions } from '../harness/regions.js';
import { forgedReply } from '../harness/forged-reply.js';

const EU = 'eu';
const US = 'us';
const MODEL = { name: 'echo', version: 'v1', kind: 'echo', description: 'probe model' } as const;
/** The stream every role tries to delete; the admin re-creates it after a successful delete. */
const VICTIM_STREAM = 'AUTHZ_VICTIM';
/** How long one operation may take before the cell counts as hung (a test failure). */
const OP_TIMEOUT_MS = 5_000;

const USERS = [
  Role.Gateway,
  userName(Role.ActorHost, EU),
  Role.Controller,
  Role.Service,
  Role.Admin,
  Role.Sys,
] as const;
type User = (typeof USERS)[number];

/** What happened: it worked, the server refused it, or the request found nobody to answer. */
type Outcome = 'ok' | 'denied' | 'no-responders';

interface Operation {
  name: string;
  /** Who may do it; everyone else must be denied. */
  allowed: readonly User[];
  /** Outcomes of allowed users other than `ok`: a request nobody in their account answers. */
  unanswered?: readonly User[];
  /** Writes state: a denied attempt must leave every stream as it was, an allowed one changes it. */
  writes: boolean;
  run(nc: NatsConnection, user: User): Promise<void>;
}

let nats: TestNats;
let credsDir: string;
let credentials: NatsCredentials;
let admin: NatsConnection;
let jsm: JetStreamManager;
let probeService: NatsConnection;
/** A task record that exists in eu, for reads and deletes. */
const storedTask = newTaskId();

function seedOf(user: string): Uint8Array {
  return readNkeySeed(credentials.user(user).seedFile, user);
}

function connectAs(user: string): Promise<NatsConnection> {
  const { inboxPrefix } = credentials.user(user);
  return connect({
    servers: nats.url,
    ...natsAuthOptions({ servers: nats.url, name: user, nkeySeed: seedOf(user), inboxPrefix }),
    maxReconnectAttempts: 0,
  });
}

async function ensureVictimStream(): Promise<void> {
  try {
    await jsm.streams.info(VICTIM_STREAM);
  } catch {
    await jsm.streams.add({ name: VICTIM_STREAM, subjects: ['authz.victim.>'] });
  }
}

/** Streams and their message and consumer counts: what a write that got through would change. */
async function storedState(): Promise<string[]> {
  const state: string[] = [];
  for await (const info of jsm.streams.list()) {
    const { messages, last_seq, consumer_count } = info.state;
    // KV watches leave ordered consumers behind for a moment; their count says nothing stored.
    const consumers = info.config.name.startsWith('KV_') ? '' : ` consumers=${consumer_count}`;
    state.push(`${info.config.name} msgs=${messages} last=${last_seq}${consumers}`);
  }
  return state.sort();
}

function isPermissionViolation(err: unknown): err is PermissionViolationError {
  for (let e = err; e instanceof Error; e = e.cause) {
    if (e instanceof PermissionViolationError) return true;
  }
  return false;
}

function isNoResponders(err: unknown): boolean {
  for (let e = err; e instanceof Error; e = e.cause) {
    if (e instanceof NoRespondersError) return true;
  }
  return false;
}

/**
 * Runs `op` on a fresh connection as `user`. A refusal shows up either as a thrown
 * PermissionViolationError (requests, subscriptions) or only on the connection's status stream
 * (plain publishes such as a pull request), so both are watched.
 */
async function attempt(op: Operation, user: User): Promise<Outcome> {
  const nc = await connectAs(user);
  let onViolation!: (err: PermissionViolationError) => void;
  const violated = new Promise<PermissionViolationError>((resolve) => (onViolation = resolve));
  void (async () => {
    for await (const status of nc.status()) {
      if (status.type === 'error' && status.error instanceof PermissionViolationError)
        onViolation(status.error);
    }
  })();
  let timer: NodeJS.Timeout | undefined;
  try {
    const run = op.run(nc, user).then(async () => {
      // The server answers a refused publish or subscription before the flush's PONG.
      await nc.flush();
    });
    const result = await Promise.race([
      run.then(() => 'done' as const),
      violated.then(() => 'violated' as const),
      new Promise<'timeout'>((resolve) => (timer = setTimeout(resolve, OP_TIMEOUT_MS, 'timeout'))),
    ]);
    run.catch(() => undefined);
    if (result === 'timeout') throw new Error(`${op.name} as ${user} did not finish`);
    if (result === 'violated') return 'denied';
    // A refusal that arrived with the flush but after the operation resolved.
    const late = await Promise.race([violated, Promise.resolve(undefined)]);
    return late ? 'denied' : 'ok';
  } catch (err) {
    if (isPermissionViolation(err)) return 'denied';
    if (isNoResponders(err)) return 'no-responders';
    throw err;
  } finally {
    clearTimeout(timer);
    await nc.close();
  }
}

async function kvOf(nc: NatsConnection, bucket: string) {
  return new Kvm(nc).open(bucket);
}

const OTHERS_INBOX: Record<User, string> = {
  [Role.Gateway]: inboxPrefixOf(Role.Service),
  [userName(Role.ActorHost, EU)]: inboxPrefixOf(Role.Gateway),
  [Role.Controller]: inboxPrefixOf(Role.Gateway),
  [Role.Service]: inboxPrefixOf(Role.Gateway),
  [Role.Admin]: inboxPrefixOf(Role.Gateway),
  [Role.Sys]: inboxPrefixOf(Role.Gateway),
};

const ACTOR_HOST_EU = userName(Role.ActorHost, EU);

const OPERATIONS: Operation[] = [
  {
    name: 'publish a request to eu',
    allowed: [Role.Gateway, Role.Service, Role.Admin],
    writes: true,
    async run(nc) {
      const task = newTaskId();
      await jetstream(nc).publish(subjects.request(EU, MODEL.name, Priority.Batch, task), 'x', {
        msgID: task,
      });
    },
  },
  {
    name: 'publish a request to us',
    allowed: [Role.Gateway, Role.Service, Role.Admin],
    writes: true,
    async run(nc) {
      const task = newTaskId();
      await jetstream(nc).publish(subjects.request(US, MODEL.name, Priority.Batch, task), 'x', {
        msgID: task,
      });
    },
  },
  {
    name: 'read a task record',
    allowed: [Role.Gateway, ACTOR_HOST_EU, Role.Service, Role.Admin],
    writes: false,
    async run(nc) {
      const entry = await (await kvOf(nc, assetNames.taskBucket(EU))).get(storedTask);
      assert.ok(entry, 'the stored task record is readable');
    },
  },
  {
    name: 'write a task record',
    allowed: [ACTOR_HOST_EU, Role.Admin],
    writes: true,
    async run(nc) {
      await (await kvOf(nc, assetNames.taskBucket(EU))).put(newTaskId(), encode({ forged: true }));
    },
  },
  {
    name: 'delete a task record',
    allowed: [ACTOR_HOST_EU, Role.Admin],
    writes: true,
    async run(nc) {
      await (await kvOf(nc, assetNames.taskBucket(EU))).delete(storedTask);
    },
  },
  {
    name: 'write a task record in us (a rescue)',
    allowed: [ACTOR_HOST_EU, Role.Admin],
    writes: true,
    async run(nc) {
      await (await kvOf(nc, assetNames.taskBucket(US))).put(newTaskId(), encode({ forged: true }));
    },
  },
  {
    name: 'write a heartbeat in eu',
    allowed: [ACTOR_HOST_EU, Role.Admin],
    writes: true,
    async run(nc, user) {
      await (await kvOf(nc, assetNames.actorBucket(EU))).put(`${MODEL.name}.${user}`, 'beat');
    },
  },
  {
    name: 'write a heartbeat in us',
    allowed: [Role.Admin],
    writes: true,
    async run(nc, user) {
      await (await kvOf(nc, assetNames.actorBucket(US))).put(`${MODEL.name}.${user}`, 'beat');
    },
  },
  {
    name: 'watch heartbeats (eu)',
    allowed: [Role.Gateway, Role.Controller, Role.Admin],
    writes: false,
    async run(nc) {
      const watch = await (await kvOf(nc, assetNames.actorBucket(EU))).watch();
      watch.stop();
    },
  },
  {
    name: 'watch heartbeats (us)',
    allowed: [Role.Gateway, ACTOR_HOST_EU, Role.Controller, Role.Admin],
    writes: false,
    async run(nc) {
      const watch = await (await kvOf(nc, assetNames.actorBucket(US))).watch();
      watch.stop();
    },
  },
  {
    name: 'create a stream',
    allowed: [Role.Admin],
    writes: true,
    async run(nc, user) {
      const name = `AUTHZ_${user.toUpperCase().replace(/-/g, '_')}`;
      await (await jetstreamManager(nc)).streams.add({ name, subjects: [`authz.${user}.>`] });
    },
  },
  {
    name: 'delete a stream',
    allowed: [Role.Admin],
    writes: true,
    async run(nc) {
      await (await jetstreamManager(nc)).streams.delete(VICTIM_STREAM);
    },
  },
  {
    name: 'purge the request stream (eu)',
    allowed: [Role.Admin],
    writes: true,
    async run(nc) {
      await (await jetstreamManager(nc)).streams.purge(assetNames.requestStream(EU));
    },
  },
  {
    name: 'create a consumer on VIGIL_REQ_EU',
    allowed: [ACTOR_HOST_EU, Role.Admin],
    writes: true,
    async run(nc, user) {
      await (
        await jetstreamManager(nc)
      ).consumers.add(assetNames.requestStream(EU), {
        durable_name: `probe-${user}`,
        filter_subject: subjects.requestsOfModel(EU, `probe-${user}`),
        ack_policy: AckPolicy.Explicit,
      });
    },
  },
  {
    name: 'pull from the model consumer (eu)',
    allowed: [ACTOR_HOST_EU, Role.Admin],
    writes: false,
    async run(nc) {
      const consumer = await jetstream(nc).consumers.get(
        assetNames.requestStream(EU),
        assetNames.modelConsumer(MODEL.name),
      );
      const msg = await consumer.next({ expires: 1_000 });
      // Hand it back: the matrix only asks whether the pull is allowed.
      msg?.nak();
    },
  },
  {
    name: 'pull from the model consumer (us, a rescue)',
    allowed: [ACTOR_HOST_EU, Role.Admin],
    writes: false,
    async run(nc) {
      const consumer = await jetstream(nc).consumers.get(
        assetNames.requestStream(US),
        assetNames.modelConsumer(MODEL.name),
      );
      const msg = await consumer.next({ expires: 1_000 });
      msg?.nak();
    },
  },
  {
    name: 'delete a queued request (eu, the unserved sweep)',
    allowed: [ACTOR_HOST_EU, Role.Admin],
    writes: true,
    async run(nc) {
      const stream = assetNames.requestStream(EU);
      const { state } = await jsm.streams.info(stream);
      await (await jetstreamManager(nc)).streams.deleteMessage(stream, state.last_seq, false);
    },
  },
  {
    // The trust boundary of outcomes: a waiting caller believes a record on its reply subject.
    name: "publish on a gateway's reply subject",
    allowed: [ACTOR_HOST_EU, Role.Admin],
    writes: false,
    run(nc) {
      nc.publish(subjects.reply('gw', newTaskId()), encode({ forged: true }));
      return Promise.resolve();
    },
  },
  {
    name: 'publish a dead letter (eu)',
    allowed: [ACTOR_HOST_EU, Role.Admin],
    writes: true,
    async run(nc) {
      await jetstream(nc).publish(subjects.deadLetter(EU, MODEL.name), 'letter');
    },
  },
  {
    name: 'read dead letters (eu)',
    allowed: [Role.Admin],
    writes: false,
    async run(nc) {
      const letters = await (await createDeadLetterAdmin(nc, { region: EU })).list();
      assert.ok(letters.length > 0, 'the seeded dead letter is listed');
    },
  },
  {
    name: 'write the model catalog',
    allowed: [Role.Controller, Role.Admin],
    writes: true,
    async run(nc, user) {
      await (await kvOf(nc, assetNames.modelBucket)).put(`probe-${user}`, 'deployment');
    },
  },
  {
    name: 'read the model catalog',
    allowed: [Role.Gateway, Role.Controller, Role.Admin],
    writes: false,
    async run(nc) {
      assert.ok(await (await kvOf(nc, assetNames.modelBucket)).get(MODEL.name));
    },
  },
  {
    name: 'subscribe to events (eu, tenant alpha)',
    allowed: [Role.Service, Role.Admin],
    writes: false,
    run(nc) {
      nc.subscribe(subjects.eventsOfTenant(EU, 'alpha'));
      return Promise.resolve();
    },
  },
  {
    name: "subscribe to another role's inbox prefix",
    allowed: [],
    writes: false,
    run(nc, user) {
      nc.subscribe(`${OTHERS_INBOX[user]}.>`);
      return Promise.resolve();
    },
  },
  {
    name: '$SRV.PING (finds the actor host)',
    allowed: [Role.Controller, Role.Admin],
    writes: false,
    async run(nc) {
      const reply = await nc.request('$SRV.PING', '', { timeout: 2_000 });
      assert.match(new TextDecoder().decode(reply.data), /authz-probe/);
    },
  },
  {
    name: 'publish to $SYS.REQ.SERVER.PING',
    allowed: [Role.Sys, Role.Admin],
    // Only the system account has the server's responders: the admin may ask, nobody answers.
    unanswered: [Role.Admin],
    writes: false,
    async run(nc) {
      const reply = await nc.request('$SYS.REQ.SERVER.PING', '', { timeout: 2_000 });
      assert.match(new TextDecoder().decode(reply.data), /"server"/);
    },
  },
];

/** Expected outcome of a cell. */
function expected(op: Operation, user: User): Outcome {
  if (!op.allowed.includes(user)) return 'denied';
  return op.unanswered?.includes(user) ? 'no-responders' : 'ok';
}

before(async () => {
  credsDir = mkdtempSync(join(tmpdir(), 'vigil-authz-'));
  credentials = generateNatsCredentials({ outDir: credsDir, regions: [EU, US] });
  nats = await startTestNats({ extraConfig: accountsConfig(credentials) });
  admin = await connectAs(Role.Admin);
  jsm = await jetstreamManager(admin);
  for (const region of [EU, US]) await provisionRegion(admin, { region }, [MODEL]);
  for (const region of [EU, US]) await ensureModelConsumer(jsm, { region, model: MODEL.name });
  await (await kvOf(admin, assetNames.taskBucket(EU))).put(storedTask, encode({ stored: true }));
  await jetstream(admin).publish(subjects.deadLetter(EU, MODEL.name), 'seeded letter');
  await ensureVictimStream();
  // A real service, served as the eu actor host: $SRV.PING needs a responder, and the answer
  // needs the actor host's allow_responses to reach the asker's own inbox.
  probeService = await connectAs(ACTOR_HOST_EU);
  await new Svcm(probeService).add({ name: 'authz-probe', version: '0.0.1' });
});

after(async () => {
  await probeService?.close();
  await admin?.close();
  await nats?.[Symbol.asyncDispose]();
  if (credsDir) rmSync(credsDir, { recursive: true, force: true });
});

describe('authorization', () => {
  test('every role against every operation', async () => {
    const mismatches: string[] = [];
    const rows: string[][] = [];
    let deniedWrites = 0;
    let allowedWrites = 0;
    for (const op of OPERATIONS) {
      const row = [op.name];
      for (const user of USERS) {
        // Writes need something to act on: a request to purge, a stream to delete.
        await jetstream(admin).publish(subjects.request(EU, 'filler', Priority.Batch, newTaskId()));
        await ensureVictimStream();
        const before = await storedState();
        const outcome = await attempt(op, user);
        const after = await storedState();
        const want = expected(op, user);
        if (outcome !== want) mismatches.push(`${op.name} as ${user}: ${outcome}, want ${want}`);
        if (op.writes && outcome === 'denied') {
          deniedWrites++;
          if (JSON.stringify(after) !== JSON.stringify(before))
            mismatches.push(`${op.name} as ${user} was denied but changed: ${diff(before, after)}`);
        }
        if (op.writes && outcome === 'ok') {
          allowedWrites++;
          // The state check can see a write: an allowed one must show.
          if (JSON.stringify(after) === JSON.stringify(before))
            mismatches.push(`${op.name} as ${user} was allowed but changed nothing`);
        }
        row.push(outcome === want ? outcome : `${outcome}(!)`);
      }
      rows.push(row);
    }
    console.log(renderTable(['operation', ...USERS], rows));
    console.log(
      `${rows.length} operations x ${USERS.length} users; writes denied and verified unstored: ` +
        `${deniedWrites}, writes allowed and verified stored: ${allowedWrites}`,
    );
    assert.deepEqual(mismatches, []);
  });

  test('a connection without credentials, or with a key the server does not know, is refused', async () => {
    await assert.rejects(
      connect({ servers: nats.url, maxReconnectAttempts: 0 }),
      (err) => err instanceof AuthorizationError,
    );
    await assert.rejects(
      connect({
        servers: nats.url,
        maxReconnectAttempts: 0,
        ...natsAuthOptions({
          servers: nats.url,
          name: 'stranger',
          nkeySeed: createUser().getSeed(),
        }),
      }),
      (err) => err instanceof AuthorizationError,
    );
    // A known key still connects: the refusals above are about the credentials.
    const service = await connectAs(Role.Service);
    await service.close();
  });
});

describe('TLS', () => {
  let dir: string;
  let server: TestNats;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vigil-tls-'));
    const openssl = (command: string) => {
      const result = spawnSync('openssl', command.split(' '), { cwd: dir, encoding: 'utf8' });
      assert.equal(result.status, 0, result.stderr);
    };
    openssl(
      'req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=vigil-test-ca -keyout ca.key -out ca.pem',
    );
    openssl('req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr');
    // The client checks the address it dialled against the certificate's names.
    writeFileSync(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
    openssl(
      'x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile server.ext -out server.pem',
    );
    server = await startTestNats({
      extraConfig: [
        'tls {',
        `  cert_file: ${JSON.stringify(join(dir, 'server.pem'))}`,
        `  key_file: ${JSON.stringify(join(dir, 'server.key'))}`,
        '}',
        accountsConfig(credentials),
      ].join('\n'),
    });
  });
  after(async () => {
    await server?.[Symbol.asyncDispose]();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a client with NATS_CA connects over TLS; one without it is refused', async () => {
    const env = {
      NATS_URL: server.url,
      ...credentials.natsEnvFor(Role.Service),
    };
    const trusted = natsOptionsFromEnv({ ...env, NATS_CA: join(dir, 'ca.pem') }, 'tls-probe');
    const nc = await connect({
      servers: trusted.servers,
      ...natsAuthOptions(trusted),
      maxReconnectAttempts: 0,
    });
    try {
      assert.equal(nc.info?.tls_required, true);
      await nc.flush();
    } finally {
      await nc.close();
    }
    const untrusted = natsOptionsFromEnv(env, 'tls-probe');
    await assert.rejects(
      connect({
        servers: untrusted.servers,
        ...natsAuthOptions(untrusted),
        maxReconnectAttempts: 0,
      }),
      /certificate/i,
    );
  });
});

describe('leaf links', () => {
  let regions: TestRegions;
  before(async () => {
    regions = await startTestRegions({
      regions: [{ name: EU, nodes: 1 }],
      edges: [{ site: 'pop1', region: EU }],
      // A caller at the hub waits long enough for the forgeries below to race the real answer.
      actorEnv: { VIGIL_MODELS: 'echo', VIGIL_ECHO_FAULTS: '{"enabled":true,"maxDelayMs":3000}' },
    });
  });
  after(() => regions?.stop());

  const leafSeed = () => readNkeySeed(regions.credentials.user('leaf-pop1').seedFile, 'leaf');
  const leafListener = () => {
    const url = new URL(regions.supercluster.leafUrlsOf(EU)[0]!);
    return { host: url.hostname, port: Number(url.port) };
  };
  const edgeAdmin = () => {
    const { seedFile, inboxPrefix } = regions.credentials.user(Role.Admin);
    const servers = regions.edgeServers.get('pop1')!.url;
    return connect({
      servers,
      ...natsAuthOptions({
        servers,
        name: 'edge-admin',
        nkeySeed: readNkeySeed(seedFile, 'admin'),
        inboxPrefix,
      }),
    });
  };
  const echo = async (site: string, input: string, delayMs = 0) => {
    const res = await regions.request(site, '/v1/models/echo/infer', {
      method: 'POST',
      body: JSON.stringify({ input, params: delayMs ? { delay_ms: delayMs } : {} }),
    });
    return { status: res.status, body: (await res.json()) as { id: string; result?: unknown } };
  };

  test('a forged reply from the edge reaches no waiting caller: the site’s server keeps it, the hub refuses it', async () => {
    const hub = await regions.connect(EU);
    const replies: string[] = [];
    hub.subscribe(subjects.allReplies, { callback: (_e, m) => void replies.push(m.subject) });
    const markers = hub.subscribe('$JS.S.leaf-probe');
    const queued = hub.subscribe(subjects.requestsOfModel(EU, 'echo'));
    await hub.flush();
    const call = echo(EU, 'real', 2_500);
    let waiting: { id: string; replyTo: string } | undefined;
    for await (const m of queued) {
      const e = decode(m.data) as { id: string; input?: unknown; replyTo?: string };
      if (e.input === 'real' && e.replyTo) waiting = { id: e.id, replyTo: e.replyTo };
      if (waiting) break;
    }
    const { id, replyTo } = waiting!;

    // A client at the edge: the hub told the site's server what the link may carry, and the
    // server drops the forgery; a marker the link does carry, sent after it, arrives alone.
    const local = await edgeAdmin();
    local.publish(replyTo, forgedReply(id));
    local.publish('$JS.S.leaf-probe', 'marker');
    await local.flush();
    for await (const _ of markers) break;
    await local.close();

    // A compromised server at the edge ignores that and speaks the leaf protocol itself.
    const link = await openRawLeafLink(leafListener(), leafSeed());
    assert.match(link.received(), /^PONG\r$/m, 'the hub accepts the leaf user on its leaf port');
    // What the link may carry still flows both ways: the hub's JetStream answers the site.
    const inbox = `${inboxPrefixOf(userName(Role.EdgeGateway, 'pop1'))}.probe`;
    link.subscribe(`${inbox}.>`);
    link.publish('$JS.vigil.API.INFO', '', `${inbox}.1`);
    await link.waitFor(/account_info_response/);
    link.publish(replyTo, forgedReply(id));
    const refusal = `Permissions Violation for Publish to "${replyTo}"`;
    assert.match(await link.waitFor(/-ERR '.*'\r\n/), new RegExp(escape(refusal)));
    await link.closed;
    await hub.flush();

    const answer = await call;
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.deepEqual(answer.body.result, { echo: 'real' }, 'the caller gets what the actor ran');
    assert.deepEqual(replies, [replyTo], 'the only reply in the hub is the actor host’s');
    const log = readFileSync(regions.supercluster.servers[0]!.options.logFile!, 'utf8');
    assert.match(log, new RegExp(`Publish Violation on "${escape(replyTo)}"`));
    // The site's own link was never cut: it still serves end to end.
    const after = await echo('pop1', 'still served');
    assert.equal(after.status, 200, JSON.stringify(after.body));
    assert.deepEqual(after.body.result, { echo: 'still served' });
    console.log(
      `leaf link: forged reply on ${replyTo} dropped by the edge's server and refused by the ` +
        `hub (link cut, logged); the caller got the actor's answer; 1 reply seen in the hub`,
    );
  });

  test('a leaf link must be a leaf user, and a leaf user cannot connect as a client', async () => {
    const asGateway = await openRawLeafLink(leafListener(), seedOf(Role.Gateway));
    assert.match(await asGateway.waitFor(/-ERR/), /Authorization Violation/);
    await asGateway.closed;
    const servers = regions.supercluster.urlsOf(EU);
    await assert.rejects(
      connect({
        servers,
        maxReconnectAttempts: 0,
        ...natsAuthOptions({ servers: servers.join(','), name: 'leaf', nkeySeed: leafSeed() }),
      }),
      (err) => err instanceof AuthorizationError,
    );
  });
});

/** `text` as a regular expression that matches it literally. */
function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function diff(before: string[], after: string[]): string {
  const gone = before.filter((s) => !after.includes(s));
  const added = after.filter((s) => !before.includes(s));
  return `[${gone.join(', ')}] -> [${added.join(', ')}]`;
}

function renderTable(header: readonly string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join(' | ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('-|-'), ...rows.map(line)].join('\n');
}
