// Obtains the pinned nats-server binary for tests, benches and the local launcher, without touching
// the system: it lands in <project>/.vigil/cache and is checked by digest before it is used.
//
// Plain Node ESM with no npm dependencies on purpose: scripts/setup.mjs imports this on a fresh
// clone, before `npm install` has run.
//
// Sources, in order:
//   1. NATS_SERVER_BIN (an operator's own build; must report >= MIN_NATS_SERVER_VERSION)
//   2. the project cache, if the binary still matches the digest recorded when it was installed
//   3. the official release archive, verified against the release's SHA256SUMS
//   4. Debian trixie's nats-server package, fetched with `apt-get download` against a private
//      source list (mirror taken from this machine's apt configuration), unpacked with `dpkg -x`.
//      Debian bookworm's own package is 2.9.x: too old and with published advisories; trixie's
//      build is static except for libc, so it runs on bookworm.

import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { arch as osArch, platform as osPlatform } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The nats-server release the project pins. */
export const NATS_SERVER_VERSION = '2.10.27';
/** Oldest nats-server Vigil runs on (sync_interval, subject transforms, multi-filter consumers). */
export const MIN_NATS_SERVER_VERSION = '2.10.0';

const RELEASE_BASE =
  'https://github.com/nats-io/nats-server/releases/download/v' + NATS_SERVER_VERSION;
/** Whole budget for the release archive and its SHA256SUMS: the fallback should not wait long. */
const RELEASE_TIMEOUT_MS = 8_000;

const DEBIAN_SUITE = 'trixie';
const DEBIAN_PACKAGE = 'nats-server';
const DEBIAN_PACKAGE_VERSION = '2.10.27-1+b2';
const DEBIAN_KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';
/**
 * Pinned digests of Debian's build, by dpkg architecture. Only amd64 has been checked by hand; on
 * other architectures the .deb is checked against the SHA256 that apt's signed Packages index
 * declares (apt-get verifies that too), and the binary must report the pinned version.
 */
const DEBIAN_PINNED = {
  amd64: {
    deb: '6d913ac987b78734c08537c2adeb1526cf735f216173a9170d94b185fcfe6f8a',
    bin: '732483147000b6f44a05cf8542b61e8fa90279b6aa050328c392dbcdf87d1947',
  },
};

/** A lock older than this is abandoned even if its owner pid looks alive (pid reuse). */
const LOCK_STALE_MS = 10 * 60_000;
const LOCK_WAIT_MS = 10 * 60_000;

const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CACHE_ROOT = join(PROJECT_ROOT, '.vigil', 'cache');
const CACHE_DIR = join(CACHE_ROOT, `nats-server-${NATS_SERVER_VERSION}`);
const CACHE_BIN = join(CACHE_DIR, 'nats-server');
const CACHE_META = join(CACHE_DIR, 'nats-server.json');
const LOCK_DIR = join(CACHE_ROOT, `nats-server-${NATS_SERVER_VERSION}.lock`);

/** Memo for natsServerBin(): a process asks for the binary once per server it starts. */
let resolved;

/**
 * Returns the nats-server binary to use, provisioning the pinned release into the project cache if
 * needed. Throws an Error that says what to do when no source works.
 *
 * @param {{ log?: (line: string) => void }} [options]
 * @returns {Promise<{ path: string, version: string, source: string }>}
 */
export async function ensureNatsServer({ log } = {}) {
  const say = log ?? (() => {});
  const fromEnv = envBinary();
  if (fromEnv) return remember(fromEnv);
  const cached = cachedBinary();
  if (cached) return remember(cached);

  mkdirSync(CACHE_ROOT, { recursive: true });
  const release = await acquireLock(say);
  try {
    // Another process may have finished while this one waited for the lock.
    const raced = cachedBinary();
    if (raced) return remember(raced);

    const failures = [];
    for (const [name, attempt] of [
      ['release archive', fromReleaseArchive],
      ['Debian package', fromDebianPackage],
    ]) {
      const started = Date.now();
      try {
        say(`nats-server: trying the ${name}`);
        const found = await attempt(say);
        say(
          `nats-server: installed from the ${name} in ${((Date.now() - started) / 1000).toFixed(1)} s`,
        );
        return remember(found);
      } catch (err) {
        const why = err instanceof Error ? err.message : String(err);
        failures.push(`  - ${name}: ${why}`);
        say(`nats-server: ${name} failed: ${firstLine(why)}`);
      }
    }
    throw new Error(
      [
        `Could not obtain nats-server ${NATS_SERVER_VERSION}. Either:`,
        `  * install nats-server >= ${MIN_NATS_SERVER_VERSION} yourself and set`,
        '    NATS_SERVER_BIN=/path/to/nats-server, or',
        `  * make ${RELEASE_BASE}/ reachable (release archive), or`,
        "  * make the Debian archive in this machine's apt sources reachable (package",
        `    ${DEBIAN_PACKAGE}=${DEBIAN_PACKAGE_VERSION} from ${DEBIAN_SUITE}),`,
        `then run \`npm run setup\` again. Why each way failed:`,
        '  - NATS_SERVER_BIN: not set',
        `  - project cache: nothing usable in ${CACHE_DIR}`,
        ...failures,
      ].join('\n'),
    );
  } finally {
    release();
  }
}

/**
 * The nats-server binary path, synchronously, if it is already provisioned (NATS_SERVER_BIN or the
 * project cache). Throws telling the caller to run `npm run setup` otherwise.
 *
 * @returns {string}
 */
export function natsServerBin() {
  if (resolved) return resolved.path;
  const found = envBinary() ?? cachedBinary();
  if (!found) {
    throw new Error(
      `nats-server ${NATS_SERVER_VERSION} is not provisioned (no NATS_SERVER_BIN, nothing usable in ${CACHE_DIR}). ` +
        'Run `npm run setup` (or set NATS_SERVER_BIN=/path/to/nats-server >= ' +
        `${MIN_NATS_SERVER_VERSION}).`,
    );
  }
  return remember(found).path;
}

function remember(found) {
  resolved = found;
  return found;
}

// ---------------------------------------------------------------------------------------------
// Sources 1 and 2: what is already on disk.

function envBinary() {
  const bin = process.env.NATS_SERVER_BIN;
  if (!bin) return undefined;
  const path = resolve(bin);
  if (!existsSync(path) || !statSync(path).isFile()) {
    throw new Error(`NATS_SERVER_BIN=${bin}: no such file`);
  }
  let version;
  try {
    version = binaryVersion(path);
  } catch (err) {
    throw new Error(`NATS_SERVER_BIN=${bin}: \`--version\` failed: ${errText(err)}`, {
      cause: err,
    });
  }
  if (compareVersions(version, MIN_NATS_SERVER_VERSION) < 0) {
    throw new Error(
      `NATS_SERVER_BIN=${bin} is nats-server ${version}; Vigil needs >= ${MIN_NATS_SERVER_VERSION}`,
    );
  }
  return { path, version, source: 'NATS_SERVER_BIN' };
}

function cachedBinary() {
  if (!existsSync(CACHE_BIN) || !existsSync(CACHE_META)) return undefined;
  let meta;
  try {
    meta = JSON.parse(readFileSync(CACHE_META, 'utf8'));
  } catch {
    return undefined;
  }
  if (typeof meta?.sha256 !== 'string' || sha256File(CACHE_BIN) !== meta.sha256) return undefined;
  return {
    path: CACHE_BIN,
    version: meta.version ?? NATS_SERVER_VERSION,
    source: `cache: ${meta.source}`,
  };
}

/** Copies a verified binary into the cache atomically and records its digest beside it. */
function install(binary, source, extra) {
  mkdirSync(CACHE_DIR, { recursive: true });
  const version = binaryVersion(binary);
  if (version !== NATS_SERVER_VERSION) {
    throw new Error(`${source} produced nats-server ${version}, expected ${NATS_SERVER_VERSION}`);
  }
  const tmp = `${CACHE_BIN}.tmp-${process.pid}`;
  copyFileSync(binary, tmp);
  chmodSync(tmp, 0o755);
  const sha256 = sha256File(tmp);
  renameSync(tmp, CACHE_BIN);
  const meta = { version, sha256, source, installedAt: new Date().toISOString(), ...extra };
  writeFileSync(`${CACHE_META}.tmp-${process.pid}`, `${JSON.stringify(meta, null, 2)}\n`);
  renameSync(`${CACHE_META}.tmp-${process.pid}`, CACHE_META);
  return { path: CACHE_BIN, version, source };
}

// ---------------------------------------------------------------------------------------------
// Source 3: the official release archive.

async function fromReleaseArchive() {
  const os = { linux: 'linux', darwin: 'darwin', freebsd: 'freebsd' }[osPlatform()];
  const arch = { x64: 'amd64', arm64: 'arm64', arm: 'arm7', ia32: '386' }[osArch()];
  if (!os || !arch) throw new Error(`no release archive for ${osPlatform()}/${osArch()}`);
  const stem = `nats-server-v${NATS_SERVER_VERSION}-${os}-${arch}`;
  const file = `${stem}.tar.gz`;
  const signal = AbortSignal.timeout(RELEASE_TIMEOUT_MS);

  const [sums, archive] = await Promise.all([
    download(`${RELEASE_BASE}/SHA256SUMS`, signal),
    download(`${RELEASE_BASE}/${file}`, signal),
  ]);
  const line = sums
    .toString('utf8')
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .find((parts) => parts[1]?.replace(/^\*/, '') === file);
  if (!line) throw new Error(`SHA256SUMS of v${NATS_SERVER_VERSION} does not list ${file}`);
  const expected = line[0].toLowerCase();
  const actual = sha256(archive);
  if (actual !== expected) {
    throw new Error(`${file}: sha256 ${actual} does not match SHA256SUMS (${expected})`);
  }

  const work = makeTempDir('release');
  try {
    writeFileSync(join(work, file), archive);
    await run('tar', ['-xzf', file], { cwd: work, timeoutMs: 60_000 });
    const binary = join(work, stem, 'nats-server');
    if (!existsSync(binary)) throw new Error(`${file} has no ${stem}/nats-server`);
    return install(binary, 'release archive', { archive: file, archiveSha256: actual });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

async function download(url, signal) {
  let res;
  try {
    res = await fetch(url, { signal, redirect: 'follow' });
  } catch (err) {
    const cause = err?.cause;
    const detail = cause?.message ?? cause?.code ?? err?.message;
    throw new Error(
      signal.aborted
        ? `${url}: no answer within ${RELEASE_TIMEOUT_MS / 1000} s`
        : `${url}: ${detail}`,
      { cause: err },
    );
  }
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return Buffer.from(await res.arrayBuffer());
}

// ---------------------------------------------------------------------------------------------
// Source 4: Debian trixie's package, through a private apt state.

async function fromDebianPackage() {
  if (osPlatform() !== 'linux') throw new Error('not a Linux machine');
  for (const tool of ['apt-get', 'apt-cache', 'dpkg']) {
    if (!onPath(tool)) throw new Error(`${tool} is not installed (not a Debian-based system?)`);
  }
  const debArch = (await run('dpkg', ['--print-architecture'], { timeoutMs: 10_000 })).trim();
  const mirror = debianMirror();

  const work = makeTempDir('debian');
  try {
    for (const d of ['etc', 'lists/partial', 'cache/archives/partial', 'download', 'x']) {
      mkdirSync(join(work, d), { recursive: true });
    }
    const sourceFile = join(work, 'etc', `${DEBIAN_SUITE}.sources`);
    writeFileSync(
      sourceFile,
      [
        'Types: deb',
        `URIs: ${mirror.uri}`,
        `Suites: ${DEBIAN_SUITE}`,
        'Components: main',
        ...(mirror.signedBy ? [`Signed-By: ${mirror.signedBy}`] : []),
        '',
      ].join('\n'),
    );
    // Every piece of state apt would write points into `work`; the system's lists, caches and
    // locks are left alone.
    const opts = [
      `Dir::Etc::SourceList=${sourceFile}`,
      'Dir::Etc::SourceParts=/dev/null',
      `Dir::State::Lists=${join(work, 'lists')}`,
      `Dir::Cache=${join(work, 'cache')}`,
      'Debug::NoLocking=1',
      'Acquire::Languages=none',
      'Acquire::Retries=1',
      'Acquire::http::Timeout=30',
      'Acquire::https::Timeout=30',
      // As root apt would hand downloads to the _apt user, who cannot write into our cache.
      ...(process.getuid?.() === 0 ? ['APT::Sandbox::User=root'] : []),
    ].flatMap((o) => ['-o', o]);

    await run('apt-get', [...opts, '-q', 'update'], { timeoutMs: 5 * 60_000 });
    const pkg = `${DEBIAN_PACKAGE}=${DEBIAN_PACKAGE_VERSION}`;
    await run('apt-get', [...opts, '-q', 'download', pkg], {
      cwd: join(work, 'download'),
      timeoutMs: 5 * 60_000,
    });
    const debName = readdirSync(join(work, 'download')).find((f) => f.endsWith('.deb'));
    if (!debName) throw new Error(`apt-get download ${pkg} produced no .deb`);
    const deb = join(work, 'download', debName);
    const debSha = sha256File(deb);

    const pinned = DEBIAN_PINNED[debArch];
    if (pinned) {
      if (debSha !== pinned.deb) {
        throw new Error(`${debName}: sha256 ${debSha} does not match the pinned ${pinned.deb}`);
      }
    } else {
      // No hand-checked digest for this architecture: hold it to the digest that apt's signed
      // Packages index declares.
      const show = await run('apt-cache', [...opts, 'show', pkg], { timeoutMs: 60_000 });
      const declared = /^SHA256:\s*([0-9a-f]{64})\s*$/m.exec(show)?.[1];
      if (!declared) throw new Error(`apt-cache show ${pkg} declares no SHA256`);
      if (debSha !== declared) {
        throw new Error(`${debName}: sha256 ${debSha} does not match the index's ${declared}`);
      }
    }

    await run('dpkg', ['-x', deb, join(work, 'x')], { timeoutMs: 60_000 });
    const binary = join(work, 'x', 'usr', 'sbin', 'nats-server');
    if (!existsSync(binary)) throw new Error(`${debName} has no usr/sbin/nats-server`);
    if (pinned) {
      const binSha = sha256File(binary);
      if (binSha !== pinned.bin) {
        throw new Error(
          `usr/sbin/nats-server: sha256 ${binSha} does not match the pinned ${pinned.bin}`,
        );
      }
    }
    return install(binary, `Debian ${DEBIAN_SUITE} package ${pkg}`, {
      deb: debName,
      debSha256: debSha,
      mirror: mirror.uri,
    });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * The Debian archive this machine's apt already uses, read from deb822 `*.sources` files and the
 * legacy one-line `sources.list` format. Security and other side archives are skipped.
 */
function debianMirror() {
  const entries = [];
  const dir = '/etc/apt/sources.list.d';
  const parts = existsSync(dir) ? readdirSync(dir).sort() : [];
  for (const f of parts.filter((n) => n.endsWith('.sources'))) {
    entries.push(...parseDeb822(readFileSync(join(dir, f), 'utf8')));
  }
  for (const f of [
    '/etc/apt/sources.list',
    ...parts.filter((n) => n.endsWith('.list')).map((n) => join(dir, n)),
  ]) {
    if (existsSync(f)) entries.push(...parseOneLine(readFileSync(f, 'utf8')));
  }
  const usable = entries.filter(
    (e) =>
      /^https?:\/\//.test(e.uri) &&
      !/security/.test(e.uri) &&
      !e.suites.every((s) => /-(security|updates|backports|proposed-updates)$/.test(s)),
  );
  // Prefer an entry that is plainly the Debian archive over, say, a vendor repository.
  const chosen =
    usable.find((e) => /\/debian\/?$/.test(e.uri) && e.signedBy?.includes('debian')) ??
    usable.find((e) => /\/debian\/?$/.test(e.uri)) ??
    usable.find((e) => e.signedBy?.includes('debian'));
  if (!chosen) {
    throw new Error(
      'found no Debian archive in /etc/apt/sources.list or /etc/apt/sources.list.d/ to fetch from',
    );
  }
  const signedBy =
    chosen.signedBy && !chosen.signedBy.includes('\n') && existsSync(chosen.signedBy)
      ? chosen.signedBy
      : existsSync(DEBIAN_KEYRING)
        ? DEBIAN_KEYRING
        : undefined;
  return { uri: chosen.uri.replace(/\/+$/, ''), signedBy };
}

function parseDeb822(text) {
  const out = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const fields = {};
    let last;
    for (const raw of stanza.split('\n')) {
      if (raw.startsWith('#')) continue;
      if (/^\s/.test(raw) && last) {
        fields[last] += `\n${raw.trim()}`;
        continue;
      }
      const m = /^([A-Za-z0-9-]+):\s*(.*)$/.exec(raw);
      if (m) {
        last = m[1].toLowerCase();
        fields[last] = m[2].trim();
      }
    }
    if (!fields.uris || !(fields.types ?? '').split(/\s+/).includes('deb')) continue;
    if (/^(no|false|0)$/i.test(fields.enabled ?? 'yes')) continue;
    const suites = (fields.suites ?? '').split(/\s+/).filter(Boolean);
    for (const uri of fields.uris.split(/\s+/).filter(Boolean)) {
      out.push({ uri, suites, signedBy: fields['signed-by'] });
    }
  }
  return out;
}

function parseOneLine(text) {
  const out = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    const m = /^deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)/.exec(line);
    if (!m) continue;
    const signedBy = /(?:^|\s)signed-by=(\S+)/.exec(m[1] ?? '')?.[1];
    out.push({ uri: m[2], suites: [m[3]], signedBy });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Lock: mkdir is atomic, so exactly one process downloads; the others wait and then use the cache.

async function acquireLock(say) {
  const deadline = Date.now() + LOCK_WAIT_MS;
  let told = false;
  for (;;) {
    try {
      mkdirSync(LOCK_DIR);
      writeFileSync(
        join(LOCK_DIR, 'owner.json'),
        JSON.stringify({ pid: process.pid, at: Date.now() }),
      );
      let held = true;
      const release = () => {
        if (!held) return;
        held = false;
        rmSync(LOCK_DIR, { recursive: true, force: true });
      };
      // A crash between here and release() leaves a lock that the stale check below clears.
      process.once('exit', release);
      return () => {
        process.removeListener('exit', release);
        release();
      };
    } catch (err) {
      if (err?.code !== 'EEXIST') throw err;
    }
    if (lockIsStale()) {
      say('nats-server: removing a stale provisioning lock');
      rmSync(LOCK_DIR, { recursive: true, force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${LOCK_DIR}; remove it if no setup is running`);
    }
    if (!told) {
      say('nats-server: another process is provisioning it; waiting');
      told = true;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

function lockIsStale() {
  let owner;
  try {
    owner = JSON.parse(readFileSync(join(LOCK_DIR, 'owner.json'), 'utf8'));
  } catch {
    // Owner file not written yet (or the lock just vanished): judge by the directory's age.
    try {
      return Date.now() - statSync(LOCK_DIR).mtimeMs > 30_000;
    } catch {
      return false;
    }
  }
  if (Date.now() - owner.at > LOCK_STALE_MS) return true;
  try {
    process.kill(owner.pid, 0);
    return false;
  } catch (err) {
    return err?.code === 'ESRCH';
  }
}

// ---------------------------------------------------------------------------------------------
// Small helpers.

function makeTempDir(kind) {
  const dir = join(CACHE_ROOT, `tmp-${kind}-${process.pid}-${Date.now()}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

function binaryVersion(path) {
  const out = execFileSync(path, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  const m = /nats-server:?\s+v?(\d+\.\d+\.\d+)/.exec(out);
  if (!m) throw new Error(`unexpected \`--version\` output: ${out.trim()}`);
  return m[1];
}

function compareVersions(a, b) {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

function sha256(buf) {
  return createHash('sha256').update(buf).digest('hex');
}

function sha256File(path) {
  return sha256(readFileSync(path));
}

function onPath(cmd) {
  return (process.env.PATH ?? '')
    .split(':')
    .filter(Boolean)
    .some((d) => existsSync(join(d, cmd)));
}

/** Runs a command, resolving with stdout; rejects with the tail of stderr. */
function run(cmd, args, { cwd, timeoutMs }) {
  return new Promise((resolvePromise, reject) => {
    execFile(
      cmd,
      args,
      {
        cwd,
        timeout: timeoutMs,
        maxBuffer: 64 * 1024 * 1024,
        encoding: 'utf8',
        env: { ...process.env, LC_ALL: 'C' },
      },
      (err, stdout, stderr) => {
        if (!err) return resolvePromise(stdout);
        const tail = `${stderr}\n${stdout}`.trim().split('\n').slice(-8).join('\n      ');
        const what = err.killed ? `timed out after ${timeoutMs / 1000} s` : `exit ${err.code}`;
        reject(
          new Error(
            `\`${cmd} ${args.filter((a) => a !== '-o' && !a.includes('::')).join(' ')}\` ${what}:\n      ${tail}`,
          ),
        );
      },
    );
  });
}

function errText(err) {
  return err instanceof Error ? firstLine(err.message) : String(err);
}

function firstLine(s) {
  return String(s).split('\n')[0];
}
