/**
 * The roles' permissions as data, the credentials generator, and the connection settings that
 * use them, without a running server (the authorization matrix in test/e2e/authorization.test.ts
 * runs them against one).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  ConnectionType,
  inboxPrefixOf,
  Role,
  userName,
  ValidationError,
  vigilUsers,
  type SubjectRules,
} from '../../protocol/index.js';
import { silentLogger, ConfigError, natsOptionsFromEnv } from '../../nodes/common/index.js';
import { gatewayOptionsFromEnv } from '../../nodes/gateway/index.js';
import { accountsIncludeLine, generateNatsCredentials } from '../../nodes/launcher/index.js';
import { natsServerBin } from '../../scripts/nats-server-provision.mjs';

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-perm-'));
  dirs.push(dir);
  return dir;
}
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A NATS subject or wildcard filter: non-empty tokens, `*` and `>` only as whole tokens. */
function isValidFilter(subject: string): boolean {
  const tokens = subject.split('.');
  return tokens.every(
    (t, i) =>
      t.length > 0 &&
      !/\s/.test(t) &&
      (t === '>' ? i === tokens.length - 1 : !t.includes('>')) &&
      (t === '*' || !t.includes('*')),
  );
}

/** True when the literal `subject` matches the filter `pattern` (`*` one token, `>` the rest). */
function matches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const t = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return t.length > i;
    if (i >= t.length || (p[i] !== '*' && p[i] !== t[i])) return false;
  }
  return p.length === t.length;
}

/** What nats-server decides for a literal subject: some allow matches and no deny does. */
function permits(rules: SubjectRules, subject: string): boolean {
  return (
    rules.allow.some((a) => matches(a, subject)) &&
    !(rules.deny ?? []).some((d) => matches(d, subject))
  );
}

describe('permissions', () => {
  const users = vigilUsers(['eu', 'us']);

  test('one user per role and one actor host per region, each with its own inbox prefix', () => {
    assert.deepEqual(
      users.map((u) => u.name),
      ['gateway', 'actor-host-eu', 'actor-host-us', 'controller', 'service', 'admin', 'sys'],
    );
    assert.equal(new Set(users.map((u) => u.inboxPrefix)).size, users.length);
    assert.equal(userName(Role.ActorHost, 'eu'), 'actor-host-eu');
    assert.equal(inboxPrefixOf('actor-host-eu'), '_INBOX_actor-host-eu');
  });

  test('no user may subscribe to another user’s inboxes', () => {
    for (const user of users) {
      const own = `${user.inboxPrefix}.>`;
      assert.ok(
        user.permissions.subscribe.allow.some((s) => s === own || s === '>'),
        `${user.name} can read its own inbox`,
      );
      for (const other of users) {
        if (other === user) continue;
        const theirs = `${other.inboxPrefix}.>`;
        const allowed = user.permissions.subscribe.allow.some(
          (s) => s === theirs || s === '>' || s === '_INBOX.>',
        );
        const denied = user.permissions.subscribe.deny?.includes(theirs) ?? false;
        // The admin's `>` is cut back by a deny per application user; the system account's
        // users live in another account, where application inboxes do not exist.
        if (other.account === user.account) {
          assert.ok(!allowed || denied, `${user.name} could read ${other.name}'s replies`);
        }
      }
    }
  });

  test('every grant is a valid subject filter and none uses a JetStream domain prefix', () => {
    for (const user of users) {
      const p = user.permissions;
      for (const subject of [
        ...p.publish.allow,
        ...(p.publish.deny ?? []),
        ...p.subscribe.allow,
        ...(p.subscribe.deny ?? []),
      ]) {
        assert.ok(isValidFilter(subject), `${user.name}: '${subject}'`);
        assert.doesNotMatch(subject, /^\$JS\.[^.]+\.API\./, `${user.name}: '${subject}'`);
      }
    }
  });

  test('an actor host serves its region, and may only work the queues of the others', () => {
    const eu = users.find((u) => u.name === 'actor-host-eu')!;
    const grants = [...eu.permissions.publish.allow, ...eu.permissions.subscribe.allow];
    assert.ok(grants.some((s) => s.includes('VIGIL_REQ_EU')));
    // Rescuing us's queue: pull and ack it, write its task records, watch its heartbeats.
    assert.ok(grants.some((s) => s.includes('CONSUMER.MSG.NEXT.VIGIL_REQ_US')));
    assert.ok(grants.includes('$KV.vigil-tasks-us.>'));
    // Never: beat as an actor of us, take us's commands, or answer as one of its services.
    assert.ok(!grants.includes('$KV.vigil-actors-us.>'));
    assert.ok(!eu.permissions.subscribe.allow.some((s) => /\.us\./.test(s)));
    assert.equal(eu.permissions.allowResponses, true);
  });

  test('every user connects only as a client, except the leaf users, only as leaf links', () => {
    for (const user of vigilUsers(['eu', 'us'], ['pop1'])) {
      const want = user.role === Role.Leaf ? ConnectionType.Leaf : ConnectionType.Client;
      assert.deepEqual(user.connectionTypes, [want], user.name);
    }
  });

  test('a leaf link carries what its site needs and nothing that speaks for the hub', () => {
    const leaf = vigilUsers(['eu', 'us'], ['pop1']).find((u) => u.name === 'leaf-pop1')!;
    assert.equal(leaf.role, Role.Leaf);
    const { publish, subscribe } = leaf.permissions;
    const task = 'a'.repeat(26);
    // Into the hub: the site gateway's requests to the hub's domain, and the hub's sourcing.
    for (const subject of [
      '$JS.vigil.API.INFO',
      '$JS.vigil.API.DIRECT.GET.VIGIL_REQ_EU',
      '$JS.vigil.API.STREAM.MSG.GET.KV_vigil-tasks-us',
      '$JS.vigil.API.CONSUMER.CREATE.KV_vigil-models.oc_1.$KV.vigil-models.>',
      '$JS.FC.KV_vigil-actors-eu.oc_1.x',
      `vigil.req.us.echo.interactive.${task}`,
      '$KV.vigil-quotas.alpha.day',
      '$JS.S.cBK54Zel',
      '$JSC.R.y36cry8s',
    ]) {
      assert.ok(permits(publish, subject), `the hub accepts ${subject} from the site`);
    }
    for (const subject of [
      `vigil.reply.gw-abc.${task}`,
      `$KV.vigil-tasks-eu.${task}`,
      '$KV.vigil-actors-eu.echo.host',
      'vigil.dlq.eu.echo',
      'vigil.ctl.eu.host.restart',
      `vigil.evt.eu.alpha.${task}`,
      '$JS.API.STREAM.DELETE.VIGIL_REQ_EU',
      '$JS.vigil.API.STREAM.DELETE.VIGIL_REQ_EU',
      '$JS.vigil.API.CONSUMER.MSG.NEXT.VIGIL_REQ_EU.actor-echo',
      '_INBOX_admin.x.1',
    ]) {
      assert.ok(!permits(publish, subject), `the hub refuses ${subject} from the site`);
    }
    assert.ok(publish.deny?.includes('vigil.reply.>'), 'replies are denied outright');
    // Out to the site: its gateway's replies, and the sourcing of its own stream only.
    for (const subject of [
      '_INBOX_edge-gateway-pop1.abc.1',
      `vigil.reply.gw-abc.${task}`,
      '$JS.edge-pop1.API.CONSUMER.CREATE.VIGIL_EDGE_POP1.JS_SRC_1.vigil.edge.pop1.req.eu.>',
      '$JS.edge-pop1.API.CONSUMER.DELETE.VIGIL_EDGE_POP1.JS_SRC_1',
      '$JS.FC.VIGIL_EDGE_POP1.JS_SRC_1.x',
      '$JS.FC.edge-pop1.7XC1jkS6.VIGIL_EDGE_POP1.JS_SRC_1.x',
    ]) {
      assert.ok(permits(subscribe, subject), `the hub sends ${subject} to the site`);
    }
    for (const subject of [
      '_INBOX_admin.abc.1',
      '_INBOX_edge-gateway-pop2.abc.1',
      `vigil.req.eu.echo.interactive.${task}`,
      `vigil.evt.eu.alpha.${task}`,
      '$JS.edge-pop1.API.STREAM.DELETE.VIGIL_EDGE_POP1',
      '$JS.edge-pop2.API.CONSUMER.CREATE.VIGIL_EDGE_POP2.JS_SRC_1.x',
      '$JS.FC.edge-pop1.7XC1jkS6.KV_local.oc_1.x',
    ]) {
      assert.ok(!permits(subscribe, subject), `the hub keeps ${subject} from the site`);
    }
  });

  test('a region that is not a name token is refused', () => {
    assert.throws(() => vigilUsers(['EU.*']), ValidationError);
  });
});

describe('generateNatsCredentials', () => {
  test('writes 0600 seeds and an accounts.conf that nats-server accepts, with no secret or path', () => {
    const dir = tempDir();
    const creds = generateNatsCredentials({
      outDir: join(dir, 'creds'),
      regions: ['eu'],
      edgeSites: ['pop1'],
    });
    assert.equal(creds.created.length, creds.users.length);
    for (const user of creds.users) {
      assert.equal(statSync(user.seedFile).mode & 0o777, 0o600, user.seedFile);
      assert.match(readFileSync(user.seedFile, 'utf8'), /^SU[A-Z2-7]+\n$/);
    }
    const conf = readFileSync(creds.accountsFile, 'utf8');
    assert.ok(!conf.includes(dir), 'no absolute path in accounts.conf');
    for (const user of creds.users) {
      assert.ok(conf.includes(user.publicKey), user.user);
      const seed = readFileSync(user.seedFile, 'utf8').trim();
      assert.ok(!conf.includes(seed), `the seed of ${user.user} is not in accounts.conf`);
    }

    // The fragment, included from a server config elsewhere, passes nats-server's own check.
    const serverConf = join(dir, 'server.conf');
    writeFileSync(
      serverConf,
      [
        'listen: "127.0.0.1:-1"',
        `jetstream { store_dir: ${JSON.stringify(join(dir, 'store'))} }`,
        accountsIncludeLine(creds, dir),
        '',
      ].join('\n'),
    );
    const check = spawnSync(natsServerBin(), ['-t', '-c', serverConf], { encoding: 'utf8' });
    assert.equal(check.status, 0, check.stderr + check.stdout);
    assert.match(check.stderr + check.stdout, /is valid/);
  });

  test('is idempotent: existing seeds are kept, a new region adds its user', () => {
    const dir = tempDir();
    const first = generateNatsCredentials({ outDir: dir, regions: ['eu'] });
    const again = generateNatsCredentials({ outDir: dir, regions: ['eu'] });
    assert.deepEqual(again.created, []);
    assert.deepEqual(
      again.users.map((u) => u.publicKey),
      first.users.map((u) => u.publicKey),
    );
    const grown = generateNatsCredentials({ outDir: dir, regions: ['eu', 'us'] });
    assert.deepEqual(grown.created, ['actor-host-us']);
    assert.ok(
      readFileSync(grown.accountsFile, 'utf8').includes(grown.user('actor-host-us').publicKey),
    );
    assert.deepEqual(grown.natsEnvFor('actor-host-us'), {
      NATS_NKEY: join(dir, 'actor-host-us.nk'),
      NATS_INBOX_PREFIX: '_INBOX_actor-host-us',
    });
    assert.throws(() => grown.natsEnvFor('actor-host-ap'), ConfigError);
  });

  test('a damaged seed is reported, never replaced', () => {
    const dir = tempDir();
    generateNatsCredentials({ outDir: dir, regions: ['eu'] });
    writeFileSync(join(dir, 'gateway.nk'), 'not a seed\n');
    assert.throws(() => generateNatsCredentials({ outDir: dir, regions: ['eu'] }), ConfigError);
    assert.equal(readFileSync(join(dir, 'gateway.nk'), 'utf8'), 'not a seed\n');
  });
});

describe('natsOptionsFromEnv', () => {
  test('reads an nkey seed file, the inbox prefix and TLS files', () => {
    const dir = tempDir();
    const creds = generateNatsCredentials({ outDir: dir, regions: ['eu'] });
    writeFileSync(join(dir, 'ca.pem'), 'pem');
    const options = natsOptionsFromEnv(
      { ...creds.natsEnvFor('service'), NATS_CA: join(dir, 'ca.pem') },
      'probe',
    );
    assert.match(new TextDecoder().decode(options.nkeySeed), /^SU/);
    assert.equal(options.inboxPrefix, '_INBOX_service');
    assert.deepEqual(options.tls, { caFile: join(dir, 'ca.pem') });
  });

  test('bad settings are ConfigErrors that name the variable; user and token still work', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'bad.nk'), 'SUNOTASEED\n');
    writeFileSync(join(dir, 'cert.pem'), 'pem');
    const cases: [NodeJS.ProcessEnv, RegExp][] = [
      [{ NATS_NKEY: join(dir, 'missing.nk') }, /^NATS_NKEY=.*cannot be read/],
      [{ NATS_NKEY: join(dir, 'bad.nk') }, /^NATS_NKEY=.*valid user nkey seed/],
      [{ NATS_CERT: join(dir, 'cert.pem') }, /NATS_CERT and NATS_KEY/],
      [{ NATS_CA: join(dir, 'missing.pem') }, /^NATS_CA=.*cannot be read/],
      [{ NATS_INBOX_PREFIX: '_INBOX.*' }, /^NATS_INBOX_PREFIX=/],
    ];
    for (const [env, message] of cases) {
      assert.throws(
        () => natsOptionsFromEnv(env, 'probe'),
        (err) => err instanceof ConfigError && message.test(err.message),
        JSON.stringify(env),
      );
    }
    const password = natsOptionsFromEnv({ NATS_USER: 'u', NATS_PASSWORD: 'p' }, 'probe');
    assert.equal(password.user, 'u');
    assert.equal(password.pass, 'p');
    assert.equal(natsOptionsFromEnv({ NATS_TOKEN: 't' }, 'probe').token, 't');
  });
});

describe('the gateway admin connection', () => {
  const logger = silentLogger;
  const base = { VIGIL_API_KEYS: 'alpha:alpha-key-0123456789abcdef' };
  const ADMIN_KEYS = 'admin-key-0123456789abcdef';

  test('with per-role credentials, admin routes need the admin user for their connection', () => {
    const creds = generateNatsCredentials({ outDir: tempDir(), regions: ['eu'] });
    const asGateway = { ...base, ...creds.natsEnvFor(Role.Gateway) };
    const admin = creds.user(Role.Admin);
    assert.throws(
      () => gatewayOptionsFromEnv({ ...asGateway, VIGIL_ADMIN_KEYS: ADMIN_KEYS }, logger),
      (err) => err instanceof ConfigError && /VIGIL_ADMIN_NATS_NKEY/.test(err.message),
    );
    assert.throws(
      () => gatewayOptionsFromEnv({ ...asGateway, VIGIL_ADMIN_NATS_NKEY: admin.seedFile }, logger),
      (err) => err instanceof ConfigError && /VIGIL_ADMIN_KEYS is not/.test(err.message),
    );
    const options = gatewayOptionsFromEnv(
      {
        ...asGateway,
        VIGIL_ADMIN_KEYS: ADMIN_KEYS,
        VIGIL_ADMIN_NATS_NKEY: admin.seedFile,
        VIGIL_ADMIN_NATS_INBOX_PREFIX: admin.inboxPrefix,
      },
      logger,
    );
    assert.equal(options.nats.inboxPrefix, '_INBOX_gateway');
    assert.equal(options.adminNats?.inboxPrefix, '_INBOX_admin');
    assert.equal(
      new TextDecoder().decode(options.adminNats?.nkeySeed),
      readFileSync(admin.seedFile, 'utf8').trim(),
    );
  });

  test('without an nkey (password or token setups) admin routes keep the one connection', () => {
    const options = gatewayOptionsFromEnv(
      { ...base, NATS_USER: 'vigil', NATS_PASSWORD: 'pw', VIGIL_ADMIN_KEYS: ADMIN_KEYS },
      logger,
    );
    assert.equal(options.adminNats, undefined);
    assert.deepEqual(options.adminKeys, [ADMIN_KEYS]);
  });
});
