// Brings a checkout to the point where `npm start`, `npm test` and `npm run bench` can run: Node 24
// (scripts/node-runtime.mjs), npm packages installed to match package-lock.json, and nats-server
// provisioned. Runs as prestart/pretest/prebench, so it must work on a fresh clone before
// `npm install`, on any Node >= 20: plain Node ESM, no npm dependencies, and a fast no-op when
// nothing changed.

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { ensureNatsServer } from './nats-server-provision.mjs';
import { ensureNodeForInstall, NODE_MAJOR, nodeMajorAt, PROJECT_NODE } from './node-runtime.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const LOCKFILE = join(ROOT, 'package-lock.json');
const MODULES = join(ROOT, 'node_modules');
const STAMP = join(MODULES, '.vigil-install-stamp');
/** Set for the children of this script, so a lifecycle script that calls setup again is a no-op. */
const GUARD = 'VIGIL_SETUP_RUNNING';

async function main() {
  if (process.env[GUARD]) {
    console.log('setup: already running in a parent process; skipping');
    return;
  }
  process.env[GUARD] = '1';
  ensurePackages();
  if (nodeMajorAt(PROJECT_NODE) !== NODE_MAJOR) {
    throw new Error(
      `${PROJECT_NODE} is not Node ${NODE_MAJOR} after the install; run npm ci again`,
    );
  }
  const found = await ensureNatsServer({ log: (line) => console.log(`setup: ${line}`) });
  console.log(`setup: nats-server ${found.version} at ${found.path} (${found.source})`);
}

function ensurePackages() {
  if (!existsSync(LOCKFILE)) throw new Error(`${LOCKFILE} is missing; cannot install npm packages`);
  const want = createHash('sha256').update(readFileSync(LOCKFILE)).digest('hex');
  const have = existsSync(STAMP) ? readFileSync(STAMP, 'utf8').trim() : '';
  if (existsSync(MODULES) && have === want) {
    console.log('setup: npm packages up to date');
    return;
  }
  const why = !existsSync(MODULES)
    ? 'node_modules missing'
    : have
      ? 'package-lock.json changed since the last install'
      : 'node_modules not installed by setup yet';
  console.log(`setup: ${why}; running npm ci`);
  // npm runs on Node 24 (brought in first when this machine's Node is older): npm checks every
  // package's `engines` against the Node it runs on, and install scripts run on it too.
  const node = ensureNodeForInstall((line) => console.log(`setup: ${line}`));
  const args = ['ci', '--no-audit', '--no-fund'];
  const env = { ...process.env, PATH: `${dirname(node)}${delimiter}${process.env.PATH ?? ''}` };
  // Under `npm run`, reuse the npm that invoked us; otherwise the one on PATH (whose `#!/usr/bin/env
  // node` now finds Node 24 first).
  const npmCli = process.env.npm_execpath;
  const res =
    npmCli && /\.[cm]?js$/.test(npmCli)
      ? spawnSync(node, [npmCli, ...args], { cwd: ROOT, stdio: 'inherit', env })
      : spawnSync('npm', args, {
          cwd: ROOT,
          stdio: 'inherit',
          env,
          shell: process.platform === 'win32',
        });
  if (res.error) throw new Error(`could not run npm ci: ${res.error.message}`);
  if (res.status !== 0) {
    throw new Error(`npm ci failed (${res.signal ?? `exit ${res.status}`}); see its output above`);
  }
  writeFileSync(STAMP, `${want}\n`);
  console.log('setup: npm packages installed');
}

main().catch((err) => {
  console.error(`setup failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
