// Obtains nats-server for tests, benches and the local launcher, without touching the system: it
// lands in <project>/.vigil/cache/nats-server and is checked by digest every time it is used.
//
// Plain Node ESM with no npm dependencies on purpose: scripts/setup.mjs imports this on a fresh
// clone, before `npm install` has run.
//
// Sources, in order:
//   1. NATS_SERVER_BIN (an operator's own build; must report >= MIN_NATS_SERVER_VERSION)
//   2. the project cache, if the binary still matches the digest recorded when it was installed
//      and its recorded version is still >= MIN_NATS_SERVER_VERSION
//   3. the official release archive of NATS_SERVER_VERSION, verified against the release's
//      SHA256SUMS
//   4. Debian's nats-server package from the `testing` suite, else from `unstable`: whatever version
//      the suite carries, if it is >= MIN_NATS_SERVER_VERSION. Those suites keep only their newest
//      build, so no exact file or digest is pinned here; instead the .deb is held to the SHA256
//      that the suite's Packages index declares, and that index is trusted only because apt has
//      checked the suite's InRelease signature against Debian's archive keyring (and nothing
//      else). Fetched with `apt-get download` against a private source list and apt state (mirror
//      taken from this machine's apt configuration), unpacked with `dpkg -x`. Debian's build is
//      static except for libc, so it runs on older Debian releases too.

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

/**
 * The release the official archive source fetches, and the version the test suite last ran
 * against. Debian's testing and unstable suites carried the same upstream release when it was
 * chosen, so both sources gave the same server.
 */
export const NATS_SERVER_VERSION = '2.15.1';
/**
 * Oldest nats-server Vigil accepts from any source. The 2.12 line is the first with atomic batch
 * publish and counters (per-message TTL and consumer priority groups came in 2.11), which the next
 * features build on. Its floor is 2.12.7, not 2.12.0: before 2.12.7 (and 2.11.16) a queue
 * subscription could bypass a subscribe deny, and Vigil's least-privilege users rely on denies.
 */
export const MIN_NATS_SERVER_VERSION = '2.12.7';

const RELEASE_BASE =
  'https://github.com/nats-io/nats-server/releases/download/v' + NATS_SERVER_VERSION;
/** Whole budget for the release archive and its SHA256SUMS: the fallback should not wait long. */
const RELEASE_TIMEOUT_MS = 8_000;

/**
 * Debian suites to take the package from, by role rather than codename, so that a release (the
 * codename behind `testing` moving on) needs no change here. `testing` first: its packages have
 * aged in `unstable` without release-critical bugs; `unstable` when testing has dropped the package.
 */
const DEBIAN_SUITES = ['testing', 'unstable'];
const DEBIAN_PACKAGE = 'nats-server';
/** The only key the private source list trusts for the suites' InRelease signatures. */
const DEBIAN_KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';

/** A lock older than this is abandoned even if its owner pid looks alive (pid reuse). */
const LOCK_STALE_MS = 10 * 60_000;
const LOCK_WAIT_MS = 10 * 60_000;

const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CACHE_ROOT = join(PROJECT_ROOT, '.vigil', 'cache');
// Not keyed by version: what the cache holds is described by its metadata, and it is accepted as
// long as its digest holds and its version meets the minimum.
const CACHE_DIR = join(CACHE_ROOT, 'nats-server');
const CACHE_BIN = join(CACHE_DIR, 'nats-server');
const CACHE_META = join(CACHE_DIR, 'nats-server.json');
const LOCK_DIR = join(CACHE_ROOT, 'nats-server.lock');

/** Memo for natsServerBin(): a process asks for the binary once per server it starts. */
let resolved;

/**
 * Returns the nats-server binary to use, provisioning one into the project cache if needed.
 * Throws an Error that says what to do when no source works.
 *
 * @param {{ log?: (line: string) => void }} [options]
 * @returns {Promise<{ path: string, version: string, source: string }>}
 */
export async function ensureNatsServer({ log } = {}) {
  const say = log ?? (() => {});
  const fromEnv = envBinary();
  if (fromEnv) return remember(fromEnv);
  const cached = cachedBinary(say);
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
          `nats-server: installed ${found.version} from the ${name} in ${((Date.now() - started) / 1000).toFixed(1)} s`,
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
        `Could not obtain nats-server >= ${MIN_NATS_SERVER_VERSION}. Either:`,
        `  * install nats-server >= ${MIN_NATS_SERVER_VERSION} yourself and set`,
        '    NATS_SERVER_BIN=/path/to/nats-server, or',
        `  * make ${RELEASE_BASE}/ reachable (release archive), or`,
        "  * make the Debian archive in this machine's apt sources reachable (package",
        `    ${DEBIAN_PACKAGE} >= ${MIN_NATS_SERVER_VERSION} from ${DEBIAN_SUITES.join(' or ')}),`,
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
      `nats-server is not provisioned (no NATS_SERVER_BIN, nothing usable in ${CACHE_DIR}). ` +
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

function cachedBinary(say = () => {}) {
  if (!existsSync(CACHE_BIN) || !existsSync(CACHE_META)) return undefined;
  let meta;
  try {
    meta = JSON.parse(readFileSync(CACHE_META, 'utf8'));
  } catch {
    return undefined;
  }
  if (typeof meta?.sha256 !== 'string' || typeof meta?.version !== 'string') return undefined;
  if (sha256File(CACHE_BIN) !== meta.sha256) {
    say(`nats-server: ${CACHE_BIN} no longer matches its recorded digest; provisioning again`);
    return undefined;
  }
  if (!isVersion(meta.version) || compareVersions(meta.version, MIN_NATS_SERVER_VERSION) < 0) {
    say(
      `nats-server: the cached ${meta.version} is older than ${MIN_NATS_SERVER_VERSION}; provisioning again`,
    );
    return undefined;
  }
  return { path: CACHE_BIN, version: meta.version, source: `cache: ${meta.source}` };
}

/**
 * Copies a verified binary into the cache atomically and records what it is beside it: version,
 * digest, source and the source's own evidence (`extra`). `expectVersion`, when given, is the
 * version the source promised; the binary must report exactly that.
 */
function install(binary, { source, expectVersion, extra }) {
  const version = binaryVersion(binary);
  if (expectVersion && version !== expectVersion) {
    throw new Error(`${source} produced nats-server ${version}, expected ${expectVersion}`);
  }
  if (compareVersions(version, MIN_NATS_SERVER_VERSION) < 0) {
    throw new Error(
      `${source} produced nats-server ${version}, older than ${MIN_NATS_SERVER_VERSION}`,
    );
  }
  mkdirSync(CACHE_DIR, { recursive: true });
  const tmp = `${CACHE_BIN}.tmp-${process.pid}`;
  copyFileSync(binary, tmp);
  chmodSync(tmp, 0o755);
  const sha256 = sha256File(tmp);
  // The metadata goes first: a binary without matching metadata is never used, whereas new
  // metadata beside the old binary fails the digest check until the rename below.
  const meta = { version, sha256, source, installedAt: new Date().toISOString(), ...extra };
  writeFileSync(`${CACHE_META}.tmp-${process.pid}`, `${JSON.stringify(meta, null, 2)}\n`);
  renameSync(`${CACHE_META}.tmp-${process.pid}`, CACHE_META);
  renameSync(tmp, CACHE_BIN);
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
    return install(binary, {
      source: `release archive v${NATS_SERVER_VERSION}`,
      expectVersion: NATS_SERVER_VERSION,
      extra: { archive: file, archiveSha256: actual },
    });
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
// Source 4: Debian's package from testing (else unstable), through a private apt state.

async function fromDebianPackage(say) {
  if (osPlatform() !== 'linux') throw new Error('not a Linux machine');
  for (const tool of ['apt-get', 'apt-cache', 'dpkg', 'dpkg-deb']) {
    if (!onPath(tool)) throw new Error(`${tool} is not installed (not a Debian-based system?)`);
  }
  if (!existsSync(DEBIAN_KEYRING)) {
    throw new Error(
      `${DEBIAN_KEYRING} is missing (package debian-archive-keyring): nothing to check the archive's signature with`,
    );
  }
  const debArch = (await run('dpkg', ['--print-architecture'], { timeoutMs: 10_000 })).trim();
  const mirror = debianMirror();
  const failures = [];
  for (const suite of DEBIAN_SUITES) {
    try {
      return await fromDebianSuite(suite, mirror, debArch);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      failures.push(`${suite}: ${why}`);
      say(`nats-server: Debian ${suite}: ${firstLine(why)}`);
    }
  }
  throw new Error(failures.join('\n    '));
}

async function fromDebianSuite(suite, mirror, debArch) {
  const work = makeTempDir(`debian-${suite}`);
  try {
    for (const d of [
      'etc/trusted.gpg.d',
      'lists/partial',
      'cache/archives/partial',
      'download',
      'x',
    ]) {
      mkdirSync(join(work, d), { recursive: true });
    }
    const sourceFile = join(work, 'etc', `${suite}.sources`);
    writeFileSync(
      sourceFile,
      [
        'Types: deb',
        `URIs: ${mirror}`,
        `Suites: ${suite}`,
        'Components: main',
        `Architectures: ${debArch}`,
        `Signed-By: ${DEBIAN_KEYRING}`,
        '',
      ].join('\n'),
    );
    // Every piece of state apt would write points into `work`; the system's lists, caches and
    // locks are left alone. Trust is pinned too: Signed-By names Debian's keyring, the fallback
    // trust stores are empty, and no configuration elsewhere may let unsigned or weakly signed
    // indexes or unauthenticated packages through.
    const opts = [
      `Dir::Etc::SourceList=${sourceFile}`,
      'Dir::Etc::SourceParts=/dev/null',
      `Dir::Etc::Trusted=${join(work, 'etc', 'trusted.gpg')}`,
      `Dir::Etc::TrustedParts=${join(work, 'etc', 'trusted.gpg.d')}`,
      `Dir::State::Lists=${join(work, 'lists')}`,
      `Dir::Cache=${join(work, 'cache')}`,
      'Debug::NoLocking=1',
      'Acquire::AllowInsecureRepositories=0',
      'Acquire::AllowDowngradeToInsecureRepositories=0',
      'Acquire::AllowWeakRepositories=0',
      'APT::Get::AllowUnauthenticated=0',
      'Acquire::Languages=none',
      'Acquire::Retries=1',
      'Acquire::http::Timeout=30',
      'Acquire::https::Timeout=30',
      // As root apt would hand downloads to the _apt user, who cannot write into our cache.
      ...(process.getuid?.() === 0 ? ['APT::Sandbox::User=root'] : []),
    ].flatMap((o) => ['-o', o]);

    const update = await run('apt-get', [...opts, '-q', 'update'], { timeoutMs: 5 * 60_000 });
    // apt-get update exits 0 on some fetch failures (a suite it could not reach is only a
    // warning): make sure the signed release file of this suite is really there.
    const release = readReleaseFile(join(work, 'lists'), suite);
    if (!release) {
      throw new Error(
        `apt-get update left no signed release file for ${suite}:\n      ${update.trim().split('\n').slice(-4).join('\n      ')}`,
      );
    }

    // Every nats-server build the suite's signed index lists for this architecture.
    let show;
    try {
      show = await run('apt-cache', [...opts, 'show', DEBIAN_PACKAGE], { timeoutMs: 60_000 });
    } catch (err) {
      throw new Error(`${suite} has no ${DEBIAN_PACKAGE} package (${errText(err)})`, {
        cause: err,
      });
    }
    const candidates = parseStanzas(show).filter(
      (s) => s.Package === DEBIAN_PACKAGE && s.Architecture === debArch && s.Version && s.SHA256,
    );
    const usable = candidates
      .map((s) => ({ ...s, upstream: debianUpstream(s.Version) }))
      .filter((s) => s.upstream && compareVersions(s.upstream, MIN_NATS_SERVER_VERSION) >= 0)
      .sort((a, b) => compareVersions(b.upstream, a.upstream));
    const chosen = usable[0];
    if (!chosen) {
      const seen = candidates.map((s) => s.Version).join(', ') || 'none';
      throw new Error(
        `${suite} carries ${DEBIAN_PACKAGE} ${seen} for ${debArch}; need a release >= ${MIN_NATS_SERVER_VERSION}`,
      );
    }

    const pkg = `${DEBIAN_PACKAGE}=${chosen.Version}`;
    await run('apt-get', [...opts, '-q', 'download', pkg], {
      cwd: join(work, 'download'),
      timeoutMs: 5 * 60_000,
    });
    const debs = readdirSync(join(work, 'download')).filter((f) => f.endsWith('.deb'));
    if (debs.length !== 1)
      throw new Error(`apt-get download ${pkg} produced ${debs.length} .deb files`);
    const debName = debs[0];
    const deb = join(work, 'download', debName);
    // apt checks the file against the index as it downloads; check again here, so that the
    // digest recorded in the cache is one the signed index vouches for, whatever apt did.
    const debSha = sha256File(deb);
    if (debSha !== chosen.SHA256.toLowerCase()) {
      throw new Error(
        `${debName}: sha256 ${debSha} does not match ${suite}'s index (${chosen.SHA256})`,
      );
    }
    if (chosen.Size && statSync(deb).size !== Number(chosen.Size)) {
      throw new Error(
        `${debName}: ${statSync(deb).size} bytes, ${suite}'s index says ${chosen.Size}`,
      );
    }
    const control = await run('dpkg-deb', ['-f', deb, 'Package', 'Version', 'Architecture'], {
      timeoutMs: 30_000,
    });
    const fields = parseStanzas(control)[0] ?? {};
    if (
      fields.Package !== DEBIAN_PACKAGE ||
      fields.Version !== chosen.Version ||
      fields.Architecture !== debArch
    ) {
      throw new Error(
        `${debName}: control fields ${JSON.stringify(fields)} are not ${pkg} (${debArch})`,
      );
    }

    await run('dpkg', ['-x', deb, join(work, 'x')], { timeoutMs: 60_000 });
    const binary = ['usr/sbin/nats-server', 'usr/bin/nats-server']
      .map((p) => join(work, 'x', p))
      .find((p) => existsSync(p));
    if (!binary) throw new Error(`${debName} has no usr/sbin/nats-server`);
    return install(binary, {
      source: `Debian ${suite} (${release.Codename ?? '?'}) package ${pkg}`,
      expectVersion: chosen.upstream,
      extra: {
        debianSuite: suite,
        debianCodename: release.Codename,
        debianIndexDate: release.Date,
        debianPackageVersion: chosen.Version,
        deb: debName,
        debSha256: debSha,
        verifiedWith: `SHA256 of ${suite}'s Packages index, InRelease signed by ${DEBIAN_KEYRING}`,
      },
    });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * The fields of the suite's release file as apt stored it after checking its signature (InRelease,
 * or Release beside Release.gpg), or undefined when apt stored none.
 */
function readReleaseFile(listsDir, suite) {
  const names = readdirSync(listsDir);
  const inRelease = names.find((n) => n.endsWith(`_dists_${suite}_InRelease`));
  const detached = names.find((n) => n.endsWith(`_dists_${suite}_Release`));
  const hasSig = names.some((n) => n.endsWith(`_dists_${suite}_Release.gpg`));
  const file = inRelease ?? (detached && hasSig ? detached : undefined);
  if (!file) return undefined;
  const text = readFileSync(join(listsDir, file), 'utf8');
  const body = text.includes('-----BEGIN PGP SIGNED MESSAGE-----')
    ? text.split(/\n\n/).slice(1).join('\n\n')
    : text;
  return parseStanzas(body.split('-----BEGIN PGP SIGNATURE-----')[0])[0] ?? {};
}

/** Debian control stanzas (`Field: value`, continuation lines dropped) from apt/dpkg output. */
function parseStanzas(text) {
  const out = [];
  for (const block of text.split(/\n\s*\n/)) {
    const fields = {};
    for (const raw of block.split('\n')) {
      const m = /^([A-Za-z0-9-]+):\s*(.*)$/.exec(raw);
      if (m) fields[m[1]] = m[2].trim();
    }
    if (Object.keys(fields).length) out.push(fields);
  }
  return out;
}

/**
 * The upstream release in a Debian version (`2.15.1-1`, `1:2.15.1-1+b1` -> `2.15.1`), or
 * undefined for anything that is not a plain release (`2.16.0~rc1-1` is a pre-release).
 */
function debianUpstream(debVersion) {
  const upstream = debVersion.replace(/^\d+:/, '').replace(/-[^-]*$/, '');
  return /^\d+\.\d+\.\d+(\+ds\d*)?$/.test(upstream) ? upstream.replace(/\+ds\d*$/, '') : undefined;
}

/**
 * The Debian archive this machine's apt already uses, read from deb822 `*.sources` files and the
 * legacy one-line `sources.list` format. Security and other side archives are skipped. Only the
 * address is taken: suites and keys are this script's own.
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
  // The entry's own Signed-By is not taken over: the private list trusts Debian's keyring only.
  return chosen.uri.replace(/\/+$/, '');
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

/** The version a binary reports, e.g. `2.15.1`, or `2.16.0-RC.2` for a pre-release. */
function binaryVersion(path) {
  const out = execFileSync(path, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  const m = /nats-server:?\s+v?(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?)/.exec(out);
  if (!m) throw new Error(`unexpected \`--version\` output: ${out.trim()}`);
  return m[1];
}

function isVersion(v) {
  return /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$/.test(v);
}

/**
 * Orders `major.minor.patch[-pre]`: a pre-release sorts before its release, so a 2.12.7 release
 * candidate does not meet a 2.12.7 minimum. Pre-release tags compare as plain strings.
 */
function compareVersions(a, b) {
  const [ca, preA = ''] = splitPre(a);
  const [cb, preB = ''] = splitPre(b);
  const pa = ca.split('.').map(Number);
  const pb = cb.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  if (preA === preB) return 0;
  if (!preA) return 1;
  if (!preB) return -1;
  return preA < preB ? -1 : 1;
}

function splitPre(v) {
  const i = v.indexOf('-');
  return i < 0 ? [v] : [v.slice(0, i), v.slice(i + 1)];
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
