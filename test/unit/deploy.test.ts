/**
 * The deployment files under deploy/, checked against the real tools and schemas they target:
 * nats-server parses every configuration (`nats-server -t`) and runs two regions and an edge site
 * from them; Kubernetes objects, the KEDA ScaledObject, the compose file and the NATS Helm chart
 * values validate against vendored schemas (test/fixtures/deploy/) with unknown keys refused;
 * the Dockerfile's sources and commands exist. Every check is shown to fail on a broken input.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { Ajv, type ValidateFunction } from 'ajv';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { connect, nkeyAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import {
  MIN_NATS_SERVER_VERSION,
  NATS_SERVER_VERSION,
  natsServerBin,
} from '../../scripts/nats-server-provision.mjs';
import {
  NODE_V8_FLAGS,
  PROJECT_ROOT,
  freePort,
  generateNatsCredentials,
  type NatsCredentials,
} from '../../nodes/launcher/index.js';
import { readNkeySeed } from '../../nodes/common/index.js';
import { assetNames, edgeDomain, HUB_DOMAIN, subjects } from '../../protocol/index.js';

const DEPLOY = join(PROJECT_ROOT, 'deploy');
const NATS_DIR = join(DEPLOY, 'nats');
const K8S_DIR = join(DEPLOY, 'k8s');
const FIXTURES = join(PROJECT_ROOT, 'test/fixtures/deploy');

/**
 * The nats-server release a `nats` image tag (`2.15.1-alpine`) runs: the one provisioning pins,
 * which is the one the suite runs against, and never below the supported minimum.
 */
function assertNatsImageTag(tag: string, where: string): void {
  const version = /^(\d+\.\d+\.\d+)(?:-[a-z0-9.]+)?$/.exec(tag)?.[1];
  assert.ok(version, `${where}: ${tag} names no nats-server release`);
  const [a, b] = [version, MIN_NATS_SERVER_VERSION].map((v) => v.split('.').map(Number));
  const atLeastMin = a![0]! - b![0]! || a![1]! - b![1]! || a![2]! - b![2]!;
  assert.ok(atLeastMin >= 0, `${where}: nats-server ${version} < ${MIN_NATS_SERVER_VERSION}`);
  assert.equal(version, NATS_SERVER_VERSION, `${where}: not the release the suite runs against`);
}

/** A scratch directory for the whole file, removed at the end. */
const scratch = mkdtempSync(join(tmpdir(), 'vigil-deploy-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

function run(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
) {
  return spawnSync(command, args, { encoding: 'utf8', timeout: 120_000, ...options });
}

/** A CA and one certificate for 127.0.0.1/localhost usable as server and as client (openssl). */
interface Pki {
  ca: string;
  cert: string;
  key: string;
}

function makePki(dir: string): Pki {
  mkdirSync(dir, { recursive: true });
  const p = (f: string) => join(dir, f);
  const steps: string[][] = [
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      p('ca-key.pem'),
      '-out',
      p('ca.pem'),
      '-days',
      '2',
      '-subj',
      '/CN=Vigil test CA',
    ],
    [
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      p('server-key.pem'),
      '-out',
      p('server.csr'),
      '-subj',
      '/CN=nats',
    ],
  ];
  for (const args of steps) {
    const r = run('openssl', args);
    assert.equal(r.status, 0, r.stderr);
  }
  // Routes, gateways and leaf links dial out with the same certificate: both usages.
  writeFileSync(
    p('ext.cnf'),
    'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n',
  );
  const sign = run('openssl', [
    'x509',
    '-req',
    '-in',
    p('server.csr'),
    '-CA',
    p('ca.pem'),
    '-CAkey',
    p('ca-key.pem'),
    '-CAcreateserial',
    '-out',
    p('server.pem'),
    '-days',
    '2',
    '-extfile',
    p('ext.cnf'),
  ]);
  assert.equal(sign.status, 0, sign.stderr);
  return { ca: p('ca.pem'), cert: p('server.pem'), key: p('server-key.pem') };
}

/** nats-server -t on `conf` with `env`: the parser's verdict. */
function natsCheck(conf: string, env: Record<string, string>) {
  const r = run(natsServerBin(), ['-t', '-c', conf], {
    env: { PATH: process.env['PATH'], ...env },
  });
  return { ok: r.status === 0, output: r.stderr + r.stdout };
}

/** A copy of a deploy/nats file beside the generated accounts.conf, as deployments lay it out. */
function confBesideAccounts(creds: NatsCredentials, file: string, edit = (s: string) => s): string {
  const target = join(creds.outDir, file);
  writeFileSync(target, edit(readFileSync(join(NATS_DIR, file), 'utf8')));
  return target;
}

describe('nats-server configurations', () => {
  let creds: NatsCredentials;
  let pki: Pki;
  let tlsEnv: Record<string, string>;

  before(() => {
    creds = generateNatsCredentials({
      outDir: join(scratch, 'creds'),
      regions: ['eu', 'us'],
      edgeSites: ['par1'],
    });
    pki = makePki(join(scratch, 'pki'));
    tlsEnv = {
      VIGIL_NATS_TLS_CERT: pki.cert,
      VIGIL_NATS_TLS_KEY: pki.key,
      VIGIL_NATS_TLS_CA: pki.ca,
      VIGIL_NATS_STORE_DIR: join(scratch, 'store'),
    };
  });

  /** The environment of hub `eu-1` in a three-node region. */
  const hubEnv = (): Record<string, string> => ({
    ...tlsEnv,
    VIGIL_NATS_SERVER_NAME: 'eu-1',
    VIGIL_NATS_CLUSTER: 'eu',
    VIGIL_NATS_ZONE_TAG: 'az:eu-1a',
    VIGIL_NATS_ROUTES:
      '[nats-route://route:r0a1b@nats-eu-1:6222, nats-route://route:r0a1b@nats-eu-2:6222, nats-route://route:r0a1b@nats-eu-3:6222]',
    VIGIL_NATS_ROUTE_PASSWORD: 'r0a1b',
    VIGIL_NATS_GATEWAYS: '[{name: us, urls: [nats://nats-us-1:7222, nats://nats-us-2:7222]}]',
    VIGIL_NATS_GATEWAY_PASSWORD: 'g2c3d',
  });

  test('single-node.conf is valid', () => {
    const check = natsCheck(join(NATS_DIR, 'single-node.conf'), {
      VIGIL_NATS_STORE_DIR: join(scratch, 'store'),
      VIGIL_NATS_PASSWORD: 's3cret-from-env',
    });
    assert.ok(check.ok, check.output);
    assert.match(check.output, /configuration file .* is valid/);
  });

  test('hub.conf is valid for a node of a three-node region and for a one-node region', () => {
    const conf = confBesideAccounts(creds, 'hub.conf');
    const three = natsCheck(conf, hubEnv());
    assert.ok(three.ok, three.output);
    const one = natsCheck(conf, {
      ...hubEnv(),
      VIGIL_NATS_ROUTES: '[nats-route://route:r0a1b@nats-eu-1:6222]',
    });
    assert.ok(one.ok, one.output);
  });

  test('edge-leaf.conf is valid', () => {
    const check = natsCheck(confBesideAccounts(creds, 'edge-leaf.conf'), {
      ...tlsEnv,
      VIGIL_NATS_SERVER_NAME: 'edge-par1',
      VIGIL_NATS_JS_DOMAIN: 'edge-par1',
      VIGIL_NATS_HUB_URLS: '[nats-leaf://nats-eu-1:7422]',
      VIGIL_NATS_LEAF_SEED: readFileSync(creds.user('leaf-par1').seedFile, 'utf8').trim(),
    });
    assert.ok(check.ok, check.output);
  });

  test('a password of digits is refused: hence letter-first passwords', () => {
    // nats-server parses a substituted variable as configuration: `4096` is a number, not a
    // password. (2.10.27, and 2.12.4 by report, also refuse a digit followed by letters, `4e5f`;
    // 2.15.1 reads that as a string. A leading letter is safe on every version.)
    const check = natsCheck(confBesideAccounts(creds, 'hub.conf'), {
      ...hubEnv(),
      VIGIL_NATS_GATEWAY_PASSWORD: '4096',
    });
    assert.ok(!check.ok, check.output);
    assert.match(check.output, /hub\.conf:\d+:\d+|VIGIL_NATS_GATEWAY_PASSWORD/);
  });

  test('the check fails on a misspelled option, a missing variable or a missing accounts file', () => {
    const typo = natsCheck(
      confBesideAccounts(creds, 'hub.conf', (s) => s.replace('sync_interval:', 'sync_intervall:')),
      hubEnv(),
    );
    assert.ok(!typo.ok);
    assert.match(typo.output, /unknown field "sync_intervall"/);
    const env = hubEnv();
    delete env['VIGIL_NATS_GATEWAYS'];
    const missing = natsCheck(confBesideAccounts(creds, 'hub.conf'), env);
    assert.ok(!missing.ok);
    assert.match(missing.output, /VIGIL_NATS_GATEWAYS/);
    const alone = join(scratch, 'alone');
    mkdirSync(alone, { recursive: true });
    copyFileSync(join(NATS_DIR, 'hub.conf'), join(alone, 'hub.conf'));
    const noAccounts = natsCheck(join(alone, 'hub.conf'), hubEnv());
    assert.ok(!noAccounts.ok);
    assert.match(noAccounts.output, /accounts\.conf/);
  });
});

/** A nats-server started from a deploy/nats file, stopped by its pid. */
interface ConfServer {
  readonly name: string;
  readonly clientUrl: string;
  readonly monitorUrl: string;
  readonly leafPort: number;
  readonly process: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Starts `file` (a copy beside accounts.conf) with its `0.0.0.0:<port>` listeners moved to free
 * loopback ports: the only edit made to the file under test.
 */
async function startFromConf(
  creds: NatsCredentials,
  file: string,
  name: string,
  env: Record<string, string>,
  ports: Record<number, number>,
): Promise<ConfServer> {
  const conf = join(creds.outDir, `${name}.conf`);
  const text = readFileSync(join(NATS_DIR, file), 'utf8').replace(
    /0\.0\.0\.0:(\d+)/g,
    (_, port: string) => `127.0.0.1:${ports[Number(port)] ?? assert.fail(`no port for ${port}`)}`,
  );
  writeFileSync(conf, text);
  const child = spawn(natsServerBin(), ['-c', conf], {
    env: { PATH: process.env['PATH'], ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr.on('data', (chunk: Buffer) => (log = (log + chunk.toString()).slice(-4000)));
  const monitorUrl = `http://127.0.0.1:${ports[8222]}`;
  const server: ConfServer = {
    name,
    clientUrl: `tls://127.0.0.1:${ports[4222]}`,
    monitorUrl,
    leafPort: ports[7422] ?? 0,
    process: child,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      process.kill(child.pid!, 'SIGTERM');
      const timer = setTimeout(() => child.pid && process.kill(child.pid, 'SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) assert.fail(`${name} exited: ${log}`);
    const ok = await fetch(`${monitorUrl}/healthz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return server;
    await new Promise((r) => setTimeout(r, 100));
  }
  await server.stop();
  assert.fail(`${name} not healthy within 30 s: ${log}`);
}

async function freePorts(): Promise<Record<number, number>> {
  const ports: Record<number, number> = {};
  for (const port of [4222, 6222, 7222, 7422, 8222]) ports[port] = await freePort();
  return ports;
}

/** Polls `probe` every 100 ms until it returns a value, for at most `ms`. */
async function eventually<T>(
  what: string,
  ms: number,
  probe: () => Promise<T | undefined>,
): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`${what}: not within ${ms} ms (${String(last)})`);
}

/** One stage of a Dockerfile, as far as these checks need it. */
interface DockerStage {
  name: string;
  from: string;
  workdir: string;
  copies: { from?: string; sources: string[]; dest: string }[];
  /** ENV, as set in this stage and the stages it is built on. */
  env: Record<string, string>;
  /** CMD, ENTRYPOINT and HEALTHCHECK CMD argument lists (exec form). */
  commands: string[][];
}

/** Parses the instructions these checks need; anything else is ignored. */
function parseDockerfile(text: string): DockerStage[] {
  const lines = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const stages: DockerStage[] = [];
  for (const line of lines) {
    const [instruction = '', ...rest] = line.split(/\s+/);
    const args = line.slice(instruction.length).trim();
    const stage = stages.at(-1);
    switch (instruction.toUpperCase()) {
      case 'FROM': {
        const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args) ?? assert.fail(`bad FROM: ${line}`);
        const parent = stages.find((s) => s.name === m[1]);
        stages.push({
          name: m[2] ?? String(stages.length),
          from: m[1]!,
          workdir: parent?.workdir ?? '/',
          copies: [],
          env: { ...parent?.env },
          commands: [...(parent?.commands ?? [])],
        });
        break;
      }
      case 'WORKDIR':
        stage!.workdir = args;
        break;
      case 'ENV':
        // `KEY=value` pairs, unquoted (all this Dockerfile uses).
        for (const pair of rest) {
          const eq = pair.indexOf('=');
          if (eq > 0) stage!.env[pair.slice(0, eq)] = pair.slice(eq + 1);
        }
        break;
      case 'COPY': {
        const flags = rest.filter((a) => a.startsWith('--'));
        const paths = rest.filter((a) => !a.startsWith('--'));
        const from = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length);
        stage!.copies.push({
          ...(from ? { from } : {}),
          sources: paths.slice(0, -1),
          dest: paths.at(-1)!,
        });
        break;
      }
      case 'CMD':
      case 'ENTRYPOINT':
        stage!.commands.push(JSON.parse(args) as string[]);
        break;
      case 'HEALTHCHECK': {
        const cmd = args.slice(args.indexOf('CMD') + 3).trim();
        stage!.commands.push(JSON.parse(cmd) as string[]);
        break;
      }
    }
  }
  return stages;
}

/** .dockerignore patterns as regular expressions (the subset of its syntax used here). */
function dockerIgnored(patterns: string[], path: string): boolean {
  return patterns.some((pattern) => {
    const re = pattern
      .replace(/[.+^${}()|[\]]/g, '\\$&')
      .replace(/\*\*\//g, '(.*/)?')
      .replace(/\*/g, '[^/]*');
    return new RegExp(`^${re}(/.*)?$`).test(path);
  });
}

const DOCKERFILE = join(DEPLOY, 'containers', 'Dockerfile');

let imageLayout: string | undefined;
/** The image layout, built once for the tests that need it. */
function appInImage(): string {
  return (imageLayout ??= buildImageLayout(join(scratch, 'image')));
}

/**
 * The runtime image's /app, laid out on disk: the Dockerfile's COPY lines applied to this
 * checkout, dist/ compiled by the same tsc configuration into it, and the repository's
 * node_modules linked in (the image's own are `npm ci --omit=dev`).
 */
function buildImageLayout(root: string): string {
  const stages = parseDockerfile(readFileSync(DOCKERFILE, 'utf8'));
  const runtime = stages.find((s) => s.name === 'runtime') ?? assert.fail('no runtime stage');
  const app = join(root, 'app');
  mkdirSync(app, { recursive: true });
  for (const copy of runtime.copies) {
    if (copy.from === 'build') {
      assert.deepEqual(copy.sources, ['/src/dist'], 'the build stage hands over dist/ only');
      // tsc emits even when the tree has type errors elsewhere; the paths are what is checked.
      run('npx', ['tsc', '-p', 'tsconfig.build.json', '--outDir', join(app, copy.dest)], {
        cwd: PROJECT_ROOT,
      });
      const corpus = join(app, copy.dest, 'actors/runtimes/corpus');
      mkdirSync(corpus, { recursive: true });
      for (const f of readdirSync(join(PROJECT_ROOT, 'actors/runtimes/corpus')))
        copyFileSync(join(PROJECT_ROOT, 'actors/runtimes/corpus', f), join(corpus, f));
      continue;
    }
    const dest = join(app, copy.dest);
    mkdirSync(copy.dest.endsWith('/') ? dest : join(dest, '..'), { recursive: true });
    for (const source of copy.sources) {
      const target = copy.dest.endsWith('/') ? join(dest, basename(source)) : dest;
      copyFileSync(join(PROJECT_ROOT, source), target);
      chmodSync(target, 0o755);
    }
  }
  symlinkSync(join(PROJECT_ROOT, 'node_modules'), join(app, 'node_modules'));
  return app;
}

describe('container image', () => {
  const stages = parseDockerfile(readFileSync(DOCKERFILE, 'utf8'));
  const ignore = readFileSync(join(PROJECT_ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  let app: string;
  before(() => {
    app = appInImage();
  });

  test('every COPY source exists in the build context and is not excluded by .dockerignore', () => {
    let checked = 0;
    for (const stage of stages) {
      for (const copy of stage.copies.filter((c) => !c.from)) {
        for (const source of copy.sources) {
          assert.ok(existsSync(join(PROJECT_ROOT, source)), `${stage.name}: ${source} is missing`);
          assert.ok(!dockerIgnored(ignore, source), `${stage.name}: ${source} is .dockerignored`);
          checked++;
        }
      }
    }
    assert.ok(checked >= 8, `only ${checked} COPY sources found: is the parser still right?`);
    assert.ok(dockerIgnored(ignore, 'node_modules/x'), 'the ignore check can fail');
    assert.ok(dockerIgnored(ignore, 'deploy/compose/secrets/nats/admin.nk'));
  });

  test('each node target runs a file that exists in the image after the build', () => {
    const targets = ['gateway', 'actor-host', 'controller', 'provision'];
    for (const target of targets) {
      const stage = stages.find((s) => s.name === target) ?? assert.fail(`no target ${target}`);
      const paths = stage.commands
        .flat()
        .filter((arg) => /^(\/app\/|dist\/|deploy\/)/.test(arg))
        .map((arg) => (arg.startsWith('/app/') ? arg.slice('/app/'.length) : arg));
      assert.ok(paths.length > 0, `${target}: no path in its commands`);
      for (const path of paths) {
        assert.ok(existsSync(join(app, path)), `${target}: ${path} is not in the image`);
      }
    }
    assert.ok(!existsSync(join(app, 'dist/nodes/no-such-node/main.js')), 'the check can fail');
  });

  test("each node's image runs with the V8 flags the launcher gives it", () => {
    // The flags on the node's command line: those of its last CMD, before its main.js.
    const flagsOf = (stage: DockerStage) =>
      (stage.commands.at(-1) ?? []).filter((arg) => arg.startsWith('--'));
    for (const [node, flags] of Object.entries(NODE_V8_FLAGS)) {
      const stage = stages.find((s) => s.name === node) ?? assert.fail(`no target ${node}`);
      assert.deepEqual(flagsOf(stage), flags, `${node}: flags on its command line`);
      assert.equal(stage.env['NODE_OPTIONS'], undefined, `${node}: flags belong on the command`);
    }
    assert.ok(
      Object.values(NODE_V8_FLAGS).some((flags) => flags.length > 0),
      'some node has flags, so the comparison can fail',
    );
    const gateway = stages.find((s) => s.name === 'gateway')!;
    assert.equal(gateway.env['VIGIL_GATEWAY_PORT'], '8080', 'the ENV parser reads this Dockerfile');
  });

  test('the images are built on Node 24, the LTS line the project runs on', () => {
    const text = readFileSync(DOCKERFILE, 'utf8');
    const nodeImage = /^ARG NODE_IMAGE=(\S+)$/m.exec(text)?.[1];
    const node24 = /^node:24(\.\d+)*-(bookworm-|trixie-)?slim$/;
    assert.match(nodeImage ?? '', node24);
    assert.doesNotMatch('node:20-slim', node24, 'the check can fail');
    for (const stage of ['build', 'runtime'])
      assert.match(text, new RegExp(`^FROM \\$\\{NODE_IMAGE\\} AS ${stage}$`, 'm'), stage);
  });

  test('the shell entry points parse', () => {
    for (const script of ['run-with-ready-file.sh', 'provision-region.sh']) {
      const r = run('sh', ['-n', join(DEPLOY, 'containers', script)]);
      assert.equal(r.status, 0, `${script}: ${r.stderr}`);
    }
  });
});

describe('two regions and an edge site from deploy/nats', () => {
  let creds: NatsCredentials;
  let pki: Pki;
  const servers: ConfServer[] = [];
  const connections: NatsConnection[] = [];
  let eu: ConfServer;
  let us: ConfServer;
  let edge: ConfServer;

  const asUser = async (server: ConfServer, user: string): Promise<NatsConnection> => {
    const nc = await connect({
      servers: server.clientUrl,
      authenticator: nkeyAuthenticator(readNkeySeed(creds.user(user).seedFile, user)),
      inboxPrefix: creds.user(user).inboxPrefix,
      tls: { caFile: pki.ca },
      timeout: 5_000,
    });
    connections.push(nc);
    return nc;
  };

  before(async () => {
    creds = generateNatsCredentials({
      outDir: join(scratch, 'live-creds'),
      regions: ['eu', 'us'],
      edgeSites: ['par1'],
    });
    pki = makePki(join(scratch, 'live-pki'));
    const tls = {
      VIGIL_NATS_TLS_CERT: pki.cert,
      VIGIL_NATS_TLS_KEY: pki.key,
      VIGIL_NATS_TLS_CA: pki.ca,
    };
    const portsOf = { eu: await freePorts(), us: await freePorts(), edge: await freePorts() };
    const hub = (region: 'eu' | 'us', other: 'eu' | 'us') => ({
      ...tls,
      VIGIL_NATS_SERVER_NAME: `${region}-1`,
      VIGIL_NATS_CLUSTER: region,
      VIGIL_NATS_ZONE_TAG: `az:${region}-1a`,
      // A one-node region routes to itself (JetStream refuses a cluster without routes).
      VIGIL_NATS_ROUTES: `[nats-route://route:a1b2c3@127.0.0.1:${portsOf[region][6222]}]`,
      VIGIL_NATS_ROUTE_PASSWORD: 'a1b2c3',
      VIGIL_NATS_GATEWAYS: `[{name: ${other}, urls: [nats://127.0.0.1:${portsOf[other][7222]}]}]`,
      VIGIL_NATS_GATEWAY_PASSWORD: 'd4e5f6',
      VIGIL_NATS_STORE_DIR: join(scratch, `store-${region}`),
    });
    // Both hubs at once: the JetStream meta group spans the supercluster and needs both.
    [eu, us] = await Promise.all([
      startFromConf(creds, 'hub.conf', 'hub-eu', hub('eu', 'us'), portsOf.eu),
      startFromConf(creds, 'hub.conf', 'hub-us', hub('us', 'eu'), portsOf.us),
    ]);
    servers.push(eu, us);
    edge = await startFromConf(
      creds,
      'edge-leaf.conf',
      'edge-par1',
      {
        ...tls,
        VIGIL_NATS_SERVER_NAME: 'edge-par1',
        VIGIL_NATS_JS_DOMAIN: edgeDomain('par1'),
        VIGIL_NATS_HUB_URLS: `[nats-leaf://127.0.0.1:${eu.leafPort}]`,
        VIGIL_NATS_LEAF_SEED: readFileSync(creds.user('leaf-par1').seedFile, 'utf8').trim(),
        VIGIL_NATS_STORE_DIR: join(scratch, 'store-edge'),
      },
      portsOf.edge,
    );
    servers.push(edge);
  });

  after(async () => {
    await Promise.allSettled(connections.map((nc) => nc.close()));
    await Promise.allSettled(servers.map((s) => s.stop()));
  });

  test('provision-region.sh, run from the image layout, puts each region in its own cluster', async () => {
    const app = appInImage();
    // Each region is provisioned through the other region's server: placement, not the
    // connection, decides where its streams live.
    for (const [region, server] of [
      ['eu', us],
      ['us', eu],
    ] as const) {
      const r = run('sh', [join(app, 'deploy/containers/provision-region.sh')], {
        env: {
          PATH: process.env['PATH'],
          VIGIL_REGION: region,
          VIGIL_PROVISION_TIMEOUT_MS: '60000',
          NATS_URL: server.clientUrl,
          NATS_CA: pki.ca,
          ...creds.natsEnvFor('admin'),
        },
      });
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /"msg":"provisioned"/);
    }
    const jsm = await jetstreamManager(await asUser(eu, 'admin'));
    for (const region of ['eu', 'us']) {
      for (const stream of [
        assetNames.requestStream(region),
        assetNames.deadLetterStream(region),
      ]) {
        const info = await jsm.streams.info(stream);
        assert.equal(info.cluster?.name, region, `${stream} is placed in ${info.cluster?.name}`);
      }
    }
  });

  test('a gateway in eu submits to the us queue through the region link', async () => {
    const nc = await asUser(eu, 'gateway');
    const js = (await import('@nats-io/jetstream')).jetstream(nc);
    const taskId = 'a'.repeat(26);
    const ack = await eventually('us request stream', 20_000, () =>
      js.publish(subjects.request('us', 'echo', 'interactive', taskId), 'probe', { msgID: taskId }),
    );
    assert.equal(ack.stream, assetNames.requestStream('us'));
  });

  test('the edge site is a leaf of eu as its leaf user; its gateway reaches the hub domain, not the reverse', async () => {
    const leafz = await eventually('leaf link', 20_000, async () => {
      const body = (await (await fetch(`${eu.monitorUrl}/leafz`)).json()) as {
        leafs?: { account: string; name: string }[];
      };
      return body.leafs?.length ? body.leafs : undefined;
    });
    assert.deepEqual(
      leafz.map((l) => [l.name, l.account]),
      [['edge-par1', 'VIGIL']],
    );
    const atEdge = await asUser(edge, 'edge-gateway-par1');
    const info = await eventually('the hub domain from the edge', 20_000, async () =>
      (await jetstreamManager(atEdge, { domain: HUB_DOMAIN })).getAccountInfo(),
    );
    assert.equal(info.domain, HUB_DOMAIN);
    // The link carries to the site only what the site needs: the hub's admin cannot manage
    // the site's JetStream through it (the site is provisioned where it runs).
    const hubAdmin = await asUser(eu, 'admin');
    await assert.rejects(async () =>
      (
        await jetstreamManager(hubAdmin, { domain: edgeDomain('par1'), timeout: 1_000 })
      ).getAccountInfo(),
    );
  });

  test('clients must use TLS and a known nkey', async () => {
    const plain = await connect({
      servers: eu.clientUrl.replace('tls://', 'nats://'),
      authenticator: nkeyAuthenticator(readNkeySeed(creds.user('admin').seedFile, 'admin')),
      timeout: 3_000,
      maxReconnectAttempts: 0,
    }).then(
      (nc) => nc.close().then(() => 'connected'),
      (err: unknown) => String(err),
    );
    assert.notEqual(plain, 'connected');
    const stranger = await connect({
      servers: eu.clientUrl,
      tls: { caFile: pki.ca },
      timeout: 3_000,
      maxReconnectAttempts: 0,
    }).then(
      (nc) => nc.close().then(() => 'connected'),
      (err: unknown) => String(err),
    );
    assert.match(stranger, /Authorization|auth/i);
  });
});

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

const isObject = (v: unknown): v is JsonObject =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** A scalar of parsed YAML as text; a map or a list in its place is a mistake in the file. */
function str(value: Json | undefined): string {
  assert.ok(
    typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean',
    `expected a scalar, got ${JSON.stringify(value)}`,
  );
  return String(value);
}

/** Every file under `dir` whose name matches `pattern`. */
function filesUnder(dir: string, pattern: RegExp): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && pattern.test(e.name))
    .map((e) => join(e.parentPath, e.name))
    .sort();
}

/** The documents of a YAML file; YAML 1.1 merge keys (`<<: *anchor`) resolved, as compose does. */
function yamlDocuments(file: string): JsonObject[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'), { merge: true });
  return docs.map((doc) => {
    assert.deepEqual(doc.errors, [], `${file}: ${doc.errors.join('; ')}`);
    const value: unknown = doc.toJS({ maxAliasCount: 100 });
    assert.ok(isObject(value), `${file}: a document is not a mapping`);
    return value;
  });
}

/**
 * Makes an OpenAPI-derived schema refuse unknown fields, as `kubectl apply --validate=strict`
 * does: objects with declared properties get `additionalProperties: false`, unless they say
 * they keep unknown fields. Int-or-string and quantities accept both YAML types.
 */
function strict(node: Json): Json {
  if (Array.isArray(node)) return node.map(strict);
  if (!isObject(node)) return node;
  if (node['x-kubernetes-int-or-string'] === true || node['format'] === 'int-or-string')
    return { anyOf: [{ type: 'integer' }, { type: 'string' }] };
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(node)) {
    // A map keyed by property names, not a schema: keep the names, make the schemas strict.
    out[key] =
      key === 'properties' && isObject(value)
        ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, strict(v)]))
        : strict(value);
  }
  if (
    isObject(out['properties']) &&
    out['additionalProperties'] === undefined &&
    out['x-kubernetes-preserve-unknown-fields'] !== true
  ) {
    out['additionalProperties'] = false;
  }
  return out;
}

function newAjv(): Ajv {
  // OpenAPI carries its own keywords (x-kubernetes-*) and formats (int32, quantity): not errors.
  return new Ajv({ strict: false, validateFormats: false, allErrors: true });
}

const errorsOf = (validate: ValidateFunction): string =>
  (validate.errors ?? [])
    .map((e) => `${e.instancePath || '/'} ${e.message ?? ''} ${JSON.stringify(e.params)}`)
    .join('\n');

/** Validators of Kubernetes objects by `apiVersion/kind`, from the vendored definitions. */
function kubernetesValidators(): Map<string, ValidateFunction> {
  const fixture = JSON.parse(
    readFileSync(join(FIXTURES, 'kubernetes-1.36-definitions.json'), 'utf8'),
  ) as { roots: string[]; definitions: JsonObject };
  const definitions = strict(fixture.definitions) as JsonObject;
  definitions['io.k8s.apimachinery.pkg.api.resource.Quantity'] = {
    anyOf: [{ type: 'string' }, { type: 'number' }],
  };
  const ajv = newAjv();
  ajv.addSchema({ $id: 'k8s', definitions });
  const validators = new Map<string, ValidateFunction>();
  for (const root of fixture.roots) {
    const gvk = (definitions[root] as JsonObject)['x-kubernetes-group-version-kind'] as {
      group: string;
      version: string;
      kind: string;
    }[];
    for (const { group, version, kind } of gvk) {
      const apiVersion = group ? `${group}/${version}` : version;
      validators.set(`${apiVersion}/${kind}`, ajv.compile({ $ref: `k8s#/definitions/${root}` }));
    }
  }
  return validators;
}

/** The KEDA ScaledObject CRD's schema, and the nats-jetstream trigger's metadata keys. */
function kedaValidator(): { validate: ValidateFunction; natsJetStreamKeys: string[] } {
  const fixture = JSON.parse(
    readFileSync(join(FIXTURES, 'keda-scaledobject-v1alpha1.json'), 'utf8'),
  ) as { openAPIV3Schema: Json; natsJetStreamTriggerMetadata: { keys: string[] } };
  return {
    validate: newAjv().compile(strict(fixture.openAPIV3Schema) as JsonObject),
    natsJetStreamKeys: fixture.natsJetStreamTriggerMetadata.keys,
  };
}

describe('Kubernetes manifests', () => {
  const validators = kubernetesValidators();
  const keda = kedaValidator();
  const manifests = filesUnder(join(K8S_DIR, 'vigil'), /\.ya?ml$/).filter(
    (f) => basename(f) !== 'kustomization.yaml',
  );

  /** Validates one object; returns the problems, empty when it is valid. */
  const problemsOf = (doc: JsonObject): string => {
    const key = `${str(doc['apiVersion'])}/${str(doc['kind'])}`;
    if (key === 'keda.sh/v1alpha1/ScaledObject') {
      if (!keda.validate(doc)) return errorsOf(keda.validate);
      const problems: string[] = [];
      const spec = doc['spec'] as { triggers: { type: string; metadata: JsonObject }[] };
      for (const trigger of spec.triggers.filter((t) => t.type === 'nats-jetstream')) {
        for (const k of Object.keys(trigger.metadata))
          if (!keda.natsJetStreamKeys.includes(k)) problems.push(`unknown trigger metadata ${k}`);
        for (const k of ['stream', 'consumer', 'natsServerMonitoringEndpoint'])
          if (!(k in trigger.metadata)) problems.push(`trigger metadata lacks ${k}`);
      }
      return problems.join('\n');
    }
    const validate = validators.get(key);
    if (!validate) return `no schema for ${key}`;
    return validate(doc) ? '' : errorsOf(validate);
  };

  test('every object validates against its schema, unknown fields refused', () => {
    let objects = 0;
    for (const file of manifests) {
      for (const doc of yamlDocuments(file)) {
        assert.equal(problemsOf(doc), '', `${relative(PROJECT_ROOT, file)}: ${str(doc['kind'])}`);
        objects++;
      }
    }
    assert.ok(objects >= 10, `only ${objects} objects found`);
  });

  test('the validation fails on a misspelled field, a wrong type and a wrong trigger key', () => {
    const [deployment] = yamlDocuments(join(K8S_DIR, 'vigil/base/gateway.yaml'));
    const broken = structuredClone(deployment!) as { spec: { template: { spec: JsonObject } } };
    const container = (broken.spec.template.spec['containers'] as JsonObject[])[0]!;
    container['livenessProb'] = container['livenessProbe']!;
    assert.match(problemsOf(broken), /livenessProb/);
    container['ports'] = [{ name: 'http', containerPort: 'eighty' }];
    assert.match(problemsOf(broken), /containerPort/);
    const [scaled] = yamlDocuments(join(K8S_DIR, 'vigil/eu/scaledobject-chat.yaml'));
    const wrongKey = structuredClone(scaled!) as {
      spec: { triggers: { metadata: JsonObject }[] };
    };
    wrongKey.spec.triggers[0]!.metadata['lagTreshold'] = '5';
    assert.match(problemsOf(wrongKey), /lagTreshold/);
  });

  test('drain, probes, images and secrets agree with the containers', () => {
    const targets = parseDockerfile(readFileSync(DOCKERFILE, 'utf8')).map((s) => s.name);
    for (const file of manifests) {
      for (const doc of yamlDocuments(file)) {
        if (doc['kind'] !== 'Deployment' && doc['kind'] !== 'Job') continue;
        const pod = (doc['spec'] as { template: { spec: JsonObject } }).template.spec;
        for (const container of pod['containers'] as JsonObject[]) {
          const image = str(container['image']);
          assert.ok(targets.includes(image.replace('vigil/', '')), `${image}: no such target`);
          const env = (container['env'] ?? []) as { name: string; value?: string }[];
          const drain = env.find((e) => e.name === 'VIGIL_DRAIN_GRACE_MS');
          if (drain) {
            assert.ok(
              Number(pod['terminationGracePeriodSeconds']) * 1000 > Number(drain.value) + 5000,
              `${image}: terminationGracePeriodSeconds must outlast the drain`,
            );
          }
          const probes = ['startupProbe', 'readinessProbe', 'livenessProbe']
            .map((p) => container[p] as JsonObject | undefined)
            .filter((p) => p !== undefined);
          for (const probe of probes) {
            const exec = probe['exec'] as { command: string[] } | undefined;
            // The ready file is the one run-with-ready-file.sh writes.
            if (exec) assert.deepEqual(exec.command, ['test', '-f', '/tmp/vigil-ready']);
          }
          const seed = env.find((e) => e.name === 'NATS_NKEY')?.value;
          const mounts = (container['volumeMounts'] ?? []) as { mountPath: string }[];
          assert.ok(
            seed && mounts.some((m) => seed.startsWith(`${m.mountPath}/`)),
            `${image}: NATS_NKEY ${seed} is not on a mounted volume`,
          );
        }
      }
    }
  });

  test('each region builds with kustomize into valid objects', (t) => {
    const kubectl = run('kubectl', ['version', '--client']);
    if (kubectl.status !== 0) {
      t.skip('kubectl is not installed: kustomize output not checked');
      return;
    }
    for (const region of ['eu', 'us']) {
      const built = run('kubectl', ['kustomize', join(K8S_DIR, 'vigil', region)]);
      assert.equal(built.status, 0, built.stderr);
      const docs = parseAllDocuments(built.stdout).map((d) => d.toJS() as JsonObject);
      const configMaps = docs.filter((d) => d['kind'] === 'ConfigMap');
      const regionMap = configMaps.find((d) =>
        str((d['metadata'] as JsonObject)['name']).startsWith('vigil-region-'),
      );
      assert.equal((regionMap?.['data'] as JsonObject | undefined)?.['VIGIL_REGION'], region);
      for (const doc of docs.filter((d) => d['kind'] !== 'ConfigMap'))
        assert.equal(problemsOf(doc), '', `${region}: ${str(doc['kind'])}`);
    }
  });
});

describe('compose file', () => {
  const COMPOSE_DIR = join(DEPLOY, 'compose');
  const [compose] = yamlDocuments(join(COMPOSE_DIR, 'compose.yaml'));
  const services = compose!['services'] as Record<string, JsonObject>;
  const schema = JSON.parse(
    readFileSync(join(FIXTURES, 'compose-spec.json'), 'utf8'),
  ) as JsonObject;
  // The spec names the draft-07 meta-schema by an https URL Ajv does not know; it is draft-07.
  delete schema['$schema'];
  const validate = newAjv().compile(schema);

  /** Compose's `${VAR}`, `${VAR:?message}` and `${VAR:-default}` with `values`. */
  const interpolate = (text: string, values: Record<string, string>): string =>
    text.replace(/\$\{([A-Z0-9_]+)(?::[?-][^}]*)?\}/g, (_, name: string) => values[name] ?? '');

  test('it validates against the compose specification, unknown keys refused', () => {
    assert.ok(validate(compose), errorsOf(validate));
    const broken = structuredClone(compose!) as { services: Record<string, JsonObject> };
    broken.services['gateway-eu']!['stop_grace_periode'] = '15s';
    assert.ok(!validate(broken), 'a misspelled key must fail');
  });

  test('Jaeger is v2 and the nats servers run the nats-server release the suite runs against', () => {
    const jaeger = services['jaeger']!;
    // v2 is one image, jaegertracing/jaeger; v1's all-in-one image and its COLLECTOR_* settings
    // are gone (v1's support ended in December 2025).
    const jaegerV2 = /^jaegertracing\/jaeger:2\.\d+\.\d+$/;
    assert.match(str(jaeger['image']), jaegerV2);
    assert.doesNotMatch('jaegertracing/all-in-one:1.62.0', jaegerV2, 'the check can fail');
    const env = (jaeger['environment'] ?? {}) as Record<string, string>;
    assert.deepEqual(
      Object.keys(env).filter((k) => k.startsWith('COLLECTOR_') || k.startsWith('SPAN_STORAGE')),
      [],
    );
    // Its built-in configuration listens on JAEGER_LISTEN_HOST, localhost unless set.
    assert.equal(env['JAEGER_LISTEN_HOST'], '0.0.0.0');
    for (const name of ['nats-eu', 'nats-us']) {
      const [repo, tag] = str(services[name]!['image']).split(':');
      assert.equal(repo, 'nats', name);
      assertNatsImageTag(tag ?? '', name);
    }
    assert.throws(() => assertNatsImageTag('2.10.27-alpine', 'old'), /2\.10\.27 < /);
    assert.throws(() => assertNatsImageTag('latest', 'untagged'), /names no nats-server release/);
  });

  test('ports are published on loopback only; Jaeger receives every node’s traces', () => {
    for (const [name, service] of Object.entries(services)) {
      for (const port of (service['ports'] ?? []) as string[])
        assert.match(port, /^127\.0\.0\.1:/, `${name} publishes ${port} beyond loopback`);
    }
    assert.deepEqual(
      (services['jaeger']!['ports'] as string[]).map((p) => p.split(':')[1]).sort(),
      ['16686', '4317', '4318'],
    );
    const nodes = Object.entries(services).filter(([, s]) => s['build']);
    assert.ok(nodes.length >= 6);
    const targets = parseDockerfile(readFileSync(DOCKERFILE, 'utf8')).map((s) => s.name);
    for (const [name, service] of nodes) {
      const env = service['environment'] as Record<string, string>;
      // Traces only: Jaeger has no metrics pipeline, so a generic OTLP endpoint would have every
      // node push metrics into 404s.
      assert.equal(env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT'], 'http://jaeger:4318/v1/traces', name);
      assert.equal(env['OTEL_EXPORTER_OTLP_ENDPOINT'], undefined, name);
      assert.equal(env['OTEL_EXPORTER_OTLP_METRICS_ENDPOINT'], undefined, name);
      const build = service['build'] as { target: string; dockerfile: string };
      assert.ok(targets.includes(build.target), `${name}: no target ${build.target}`);
      assert.ok(existsSync(join(COMPOSE_DIR, '../..', build.dockerfile)), name);
    }
  });

  test('each node connects as a generated user; secrets stay out of git', () => {
    const users = generateNatsCredentials({
      outDir: join(scratch, 'compose-creds'),
      regions: ['eu', 'us'],
    }).users;
    for (const [name, service] of Object.entries(services)) {
      const env = (service['environment'] ?? {}) as Record<string, string>;
      const seed = env['NATS_NKEY'];
      if (seed === undefined) continue;
      const user = users.find((u) => seed === `/run/vigil/nats/${u.user}.nk`);
      assert.ok(user, `${name}: ${seed} is no generated user's seed`);
      assert.equal(env['NATS_INBOX_PREFIX'], user.inboxPrefix, name);
      assert.ok((service['volumes'] as string[]).includes('./secrets/nats:/run/vigil/nats:ro'));
    }
    for (const service of Object.values(services)) {
      for (const volume of (service['volumes'] ?? []) as string[]) {
        const source = volume.split(':')[0]!;
        if (!source.startsWith('.')) continue;
        const path = join(COMPOSE_DIR, source);
        if (source.startsWith('./secrets/')) {
          const ignored = run('git', ['check-ignore', '-q', path], { cwd: PROJECT_ROOT });
          assert.equal(ignored.status, 0, `${source} is not git-ignored`);
        } else {
          assert.ok(existsSync(path), `${source} does not exist`);
        }
      }
    }
  });

  test('the nats servers’ environment satisfies hub.conf', () => {
    const creds = generateNatsCredentials({
      outDir: join(scratch, 'compose-nats'),
      regions: ['eu', 'us'],
    });
    const pki = makePki(join(scratch, 'compose-pki'));
    const secrets = { VIGIL_NATS_ROUTE_PASSWORD: 'ab12', VIGIL_NATS_GATEWAY_PASSWORD: 'cd34' };
    for (const name of ['nats-eu', 'nats-us']) {
      const env = Object.fromEntries(
        Object.entries(services[name]!['environment'] as Record<string, string>).map(([k, v]) => [
          k,
          interpolate(str(v), secrets),
        ]),
      );
      const check = natsCheck(confBesideAccounts(creds, 'hub.conf'), {
        ...env,
        VIGIL_NATS_TLS_CERT: pki.cert,
        VIGIL_NATS_TLS_KEY: pki.key,
        VIGIL_NATS_TLS_CA: pki.ca,
        VIGIL_NATS_STORE_DIR: join(scratch, 'compose-store'),
      });
      assert.ok(check.ok, `${name}: ${check.output}`);
    }
  });
});

/** `base` with `over` merged in, maps deeply, everything else replaced (Helm's values merge). */
function mergeValues(base: Json, over: Json): Json {
  if (!isObject(base) || !isObject(over)) return structuredClone(over);
  const out: JsonObject = structuredClone(base);
  for (const [k, v] of Object.entries(over)) out[k] = k in out ? mergeValues(out[k]!, v) : v;
  return out;
}

/** The JSON Patch operations the chart's `patch` values use (add, replace). */
function applyPatch(doc: JsonObject, ops: { op: string; path: string; value: Json }[]): void {
  for (const { op, path, value } of ops) {
    const parts = path.split('/').slice(1);
    const last = parts.pop()!;
    let parent: Json = doc;
    for (const p of parts) parent = (parent as JsonObject)[p]!;
    if (Array.isArray(parent) && last === '-' && op === 'add') parent.push(value);
    else if (isObject(parent) && (op === 'replace' || op === 'add')) parent[last] = value;
    else assert.fail(`unsupported patch ${op} ${path}`);
  }
}

/**
 * The nats.conf the chart renders from `values`: files/config/*.yaml of chart 1.2.11 for the
 * sections Vigil enables, their `merge` and `patch`, and the `<< raw >>` and `$include` rules
 * of nats.formatConfig. TLS paths stay the chart's; `tlsPaths` maps them to real files.
 */
function renderChartConfig(
  values: JsonObject,
  name: string,
  tlsPaths: (p: string) => string,
): string {
  const config = values['config'] as JsonObject;
  const section = (key: string) => config[key] as JsonObject;
  const tlsOf = (s: JsonObject): JsonObject | undefined => {
    const tls = s['tls'] as JsonObject | undefined;
    if (!tls?.['enabled']) return undefined;
    const dir = str(tls['dir']);
    const ca = values['tlsCA'] as JsonObject;
    return mergeValues(
      {
        cert_file: tlsPaths(`${dir}/${str(tls['cert'])}`),
        key_file: tlsPaths(`${dir}/${str(tls['key'])}`),
        ...(ca['enabled'] ? { ca_file: tlsPaths(`${str(ca['dir'])}/${str(ca['key'])}`) } : {}),
      },
      tls['merge'] ?? {},
    ) as JsonObject;
  };
  const finish = (doc: JsonObject, s: JsonObject): JsonObject => {
    const tls = tlsOf(s);
    const merged = mergeValues(tls ? { ...doc, tls } : doc, s['merge'] ?? {}) as JsonObject;
    applyPatch(merged, (s['patch'] ?? []) as { op: string; path: string; value: Json }[]);
    return merged;
  };
  const cluster = section('cluster');
  const js = section('jetstream');
  const fileStore = js['fileStore'] as JsonObject;
  const memoryStore = js['memoryStore'] as JsonObject;
  const doc: JsonObject = {
    server_name: '<< $SERVER_NAME >>',
    lame_duck_grace_period: '10s',
    lame_duck_duration: '30s',
    port: (section('nats')['port'] as number) ?? 4222,
    ...(tlsOf(section('nats')) ? { tls: tlsOf(section('nats'))! } : {}),
    http_port: section('monitor')['port']!,
  };
  if (section('leafnodes')['enabled'])
    doc['leafnodes'] = finish(
      { port: section('leafnodes')['port']!, no_advertise: true },
      section('leafnodes'),
    );
  if (cluster['enabled'])
    doc['cluster'] = finish(
      {
        name,
        port: cluster['port']!,
        no_advertise: true,
        routes: Array.from(
          { length: Number(cluster['replicas']) },
          (_, i) => `nats://${name}-${i}.${name}-headless:6222`,
        ),
      },
      cluster,
    );
  if (section('gateway')['enabled'])
    doc['gateway'] = finish({ name, port: section('gateway')['port']! }, section('gateway'));
  if (js['enabled'])
    doc['jetstream'] = finish(
      {
        max_memory_store: memoryStore['enabled'] ? `<< ${str(memoryStore['maxSize'])} >>` : 0,
        store_dir: str(fileStore['dir']),
        max_file_store: `<< ${str(fileStore['maxSize'] ?? (fileStore['pvc'] as JsonObject)['size'])} >>`,
      },
      js,
    );
  const full = finish(doc, { merge: config['merge'] ?? {}, patch: config['patch'] ?? [] });
  return JSON.stringify(full, null, 2)
    .replace(/".*\$include": "(.*)",?/g, 'include $1;')
    .replace(/"<<\s+(.*)\s+>>"/g, '$1');
}

/** Key paths of `values` that the chart's values.yaml does not have (free-form maps excepted). */
function unknownValueKeys(values: Json, chart: Json, path = ''): string[] {
  if (!isObject(values)) return [];
  // Where the chart's default is an empty map, the keys are the user's (merge, env, ports...).
  if (isObject(chart) && Object.keys(chart).length === 0) return [];
  if (!isObject(chart)) return chart === null ? [] : [`${path} (not a map in the chart)`];
  return Object.entries(values).flatMap(([k, v]) =>
    k in chart ? unknownValueKeys(v, chart[k]!, `${path}.${k}`) : [`${path}.${k}`],
  );
}

describe('NATS Helm chart values', () => {
  const chart = parseYaml(
    readFileSync(join(FIXTURES, 'nats-chart-1.2.11-values.yaml'), 'utf8'),
  ) as JsonObject;
  const common = yamlDocuments(join(K8S_DIR, 'nats/values.yaml'))[0]!;
  const regions = ['eu', 'us'] as const;
  const regional = (r: string) => yamlDocuments(join(K8S_DIR, `nats/values-${r}.yaml`))[0]!;

  test('the image is the nats-server release the suite runs against', () => {
    const image = (common['container'] as JsonObject)['image'] as JsonObject;
    assertNatsImageTag(str(image['tag']), 'values.yaml container.image.tag');
  });

  test('every key exists in the chart’s values.yaml', () => {
    for (const [file, values] of [
      ['values.yaml', common],
      ...regions.map((r) => [`values-${r}.yaml`, regional(r)] as const),
    ] as const) {
      assert.deepEqual(unknownValueKeys(values, chart), [], file);
    }
    const misspelled = mergeValues(common, { config: { jetstream: { fileStor: {} } } });
    assert.deepEqual(unknownValueKeys(misspelled, chart), ['.config.jetstream.fileStor']);
  });

  test('the nats.conf the chart renders from them is valid, with Kubernetes expanding the env', () => {
    const pki = makePki(join(scratch, 'chart-pki'));
    // accounts.conf where the chart values include it from: ../nats-accounts beside nats-config.
    generateNatsCredentials({
      outDir: join(scratch, 'chart', 'nats-accounts'),
      regions: ['eu', 'us'],
    });
    const confDir = join(scratch, 'chart', 'nats-config');
    mkdirSync(confDir, { recursive: true });
    const tlsPaths = (p: string) =>
      p.endsWith('ca.crt') ? pki.ca : p.endsWith('tls.key') ? pki.key : pki.cert;
    const secrets: Record<string, string> = {
      'cluster-password': 'ab12',
      'gateway-password': 'cd34',
    };
    for (const region of regions) {
      const values = mergeValues(mergeValues(chart, common), regional(region)) as JsonObject;
      const name = `nats-${region}`;
      const conf = join(confDir, `nats-${region}.conf`);
      writeFileSync(conf, renderChartConfig(values, name, tlsPaths));
      // The container's env as Kubernetes builds it: the chart's own two first, then the values'
      // map in key order; $(VAR) expands only from variables defined earlier.
      const env: Record<string, string> = { POD_NAME: `${name}-0`, SERVER_NAME: `${name}-0` };
      const declared = (values['container'] as JsonObject)['env'] as JsonObject;
      for (const key of Object.keys(declared).sort()) {
        const v = declared[key]!;
        env[key] = isObject(v)
          ? secrets[str(((v['valueFrom'] as JsonObject)['secretKeyRef'] as JsonObject)['key'])]!
          : str(v).replace(
              /\$\(([A-Z0-9_]+)\)/g,
              (_, ref: string) =>
                env[ref] ?? assert.fail(`${key} uses $(${ref}) before it is defined`),
            );
      }
      const check = natsCheck(conf, { ...env, HOME: scratch });
      assert.ok(check.ok, `${region}: ${check.output}\n${readFileSync(conf, 'utf8')}`);
    }
  });
});
