/**
 * `npm start`: a whole local edge on this machine. nats-server with JetStream (data kept in
 * `.vigil/data`, so accepted tasks survive a restart), the region's streams and buckets, one
 * actor host with the built-in models and one gateway. Ctrl-C stops everything it started.
 *
 * Environment: `VIGIL_PORT` (gateway, default 8080), `VIGIL_NATS_PORT` (default: a free port),
 * `VIGIL_DEMO_KEY` (default: generated once and kept in `.vigil/demo-key`), `VIGIL_REGION`
 * (default `local`), `VIGIL_STATE_DIR` (default `.vigil`), and anything the gateway and actor
 * host read themselves (they inherit this environment).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { jsonLogger, type LogLevel } from '../../actors/log.js';
import { createBuiltinModels } from '../../actors/runtimes/index.js';
import { NAME_TOKEN } from '../../protocol/index.js';
import { envInt, envString } from '../common/env.js';
import { connectNats } from '../common/nats-connection.js';
import { startNatsServer, type NatsServerProcess } from './nats-server-process.js';
import { PROJECT_ROOT, startNode, type NodeName, type NodeProcess } from './node-process.js';
import { provisionRegion } from './provision.js';

const env = process.env;
const stateDir = env['VIGIL_STATE_DIR'] ?? join(PROJECT_ROOT, '.vigil');
const logDir = join(stateDir, 'logs');
const logger = jsonLogger({ node: 'launcher' }, 'info');

/** A secret kept in `.vigil/` (mode 0600) so restarts reuse it; generated on first use. */
function persistentSecret(file: string, fromEnv: string | undefined): string {
  if (fromEnv) return fromEnv;
  const path = join(stateDir, file);
  if (existsSync(path)) return readFileSync(path, 'utf8').trim();
  const secret = randomBytes(24).toString('base64url');
  writeFileSync(path, secret + '\n', { mode: 0o600 });
  return secret;
}

function say(text: string): void {
  process.stdout.write(text + '\n');
}

async function main(): Promise<void> {
  mkdirSync(logDir, { recursive: true });
  const region = envString(env, 'VIGIL_REGION', 'local', NAME_TOKEN);
  const gatewayPort = envInt(env, 'VIGIL_PORT', 8080, 1, 65535);
  const natsPort = envInt(env, 'VIGIL_NATS_PORT', 0, 0, 65535);
  const demoKey = persistentSecret('demo-key', env['VIGIL_DEMO_KEY']);
  const natsPassword = persistentSecret('nats-password', undefined);

  // One NATS user for the local edge, with a password that never leaves .vigil/. Per-role
  // least-privilege users come with the multi-region deployment.
  const nats: NatsServerProcess = await startNatsServer({
    port: natsPort,
    storeDir: join(stateDir, 'data', 'nats'),
    serverName: `vigil-${region}`,
    logFile: join(logDir, 'nats-server.log'),
    extraConfig: `authorization { users: [ { user: "vigil", password: "${natsPassword}" } ] }\n`,
  });
  const natsEnv = {
    NATS_URL: nats.url,
    NATS_USER: 'vigil',
    NATS_PASSWORD: natsPassword,
    VIGIL_REGION: region,
  };

  const nc = await connectNats(
    { servers: nats.url, name: 'launcher', user: 'vigil', pass: natsPassword },
    logger,
  );
  await provisionRegion(nc, { region }, createBuiltinModels());
  await nc.close();

  const echoWarnings = (name: NodeName) => (line: Record<string, unknown>) => {
    if (line['level'] === 'warn' || line['level'] === 'error')
      say(`[${name}] ${line['level']}: ${String(line['msg'])}`);
  };
  const children: NodeProcess[] = [];
  let stopping = false;
  const stopAll = async (): Promise<void> => {
    stopping = true;
    for (const child of [...children].reverse()) await child.stop();
    await nats.stop();
  };
  const onSignal = (): void => {
    if (stopping) return;
    say('\nStopping Vigil...');
    void stopAll().then(() => {
      say('Vigil stopped.');
      process.exit(0);
    });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const level: LogLevel = 'info';
  const launch = async (name: NodeName, extraEnv: Record<string, string>): Promise<NodeProcess> => {
    const child = await startNode(name, {
      env: { ...natsEnv, VIGIL_LOG_LEVEL: level, ...extraEnv },
      logFile: join(logDir, `${name}.log`),
      onLog: echoWarnings(name),
    });
    children.push(child);
    // Keep the edge up: a node that dies is started again (supervision proper lives in the host).
    void child.exited.then(async (code) => {
      if (stopping) return;
      say(`[launcher] ${name} exited (${code}); restarting it`);
      children.splice(children.indexOf(child), 1);
      await new Promise((r) => setTimeout(r, 1000));
      if (!stopping)
        await launch(name, extraEnv).catch((err: unknown) => say(`[launcher] ${String(err)}`));
    });
    return child;
  };

  await launch('actor-host', {});
  const gateway = await launch('gateway', {
    VIGIL_GATEWAY_PORT: String(gatewayPort),
    VIGIL_API_KEYS: `demo:${demoKey}`,
  });
  const url = String(gateway.ready['url']);
  // Where the running edge is, for `npm run vigil` (the CLI) and other local tools.
  writeFileSync(
    join(stateDir, 'edge.json'),
    JSON.stringify({ region, gatewayUrl: url, natsUrl: nats.url, natsUser: 'vigil' }, null, 2) +
      '\n',
  );
  say('');
  say(`Vigil is running: gateway ${url}, NATS ${nats.url}, region ${region}`);
  say(`Demo API key (tenant "demo"): ${demoKey}`);
  say(
    `Processes: ${[`nats-server=${nats.pid}`, ...children.map((c) => `${c.name}=${c.pid}`)].join(' ')}`,
  );
  say(`Logs: ${logDir}    Stop: Ctrl-C`);
  say('');
  say('Try:');
  say(
    `  curl -s ${url}/v1/models/ngram-chat/infer -H "Authorization: Bearer ${demoKey}" ` +
      `-H 'Content-Type: application/json' -d '{"input":"Tell me about liberty","params":{"max_tokens":40}}'`,
  );
  say('');
}

main().catch((err: unknown) => {
  say(`vigil: could not start: ${(err as Error).message}`);
  process.exit(1);
});
