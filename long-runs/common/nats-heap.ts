/**
 * What nats-server's Go heap holds, from its profiling port (`prof_port`): the runtime's memory
 * statistics and the sampled in-use heap profile (`/debug/pprof/heap?debug=1`, after a forced
 * GC), scaled the way `go tool pprof` scales samples, and summed by what each allocation is for
 * (the stack that made it). That separates retained task records (the task bucket's file store:
 * its per-subject index and block caches) from the request stream's duplicate window (its message
 * id map) and from consumers and connections, without a Go toolchain.
 */

/** The Go runtime's view, bytes. */
export interface GoMemStats {
  heapAlloc: number;
  heapInuse: number;
  heapSys: number;
  heapReleased: number;
  sys: number;
}

/** Estimated in-use bytes by purpose, and the largest allocation sites. */
export interface NatsHeap {
  stats: GoMemStats;
  byPurpose: Record<string, number>;
  /** Innermost nats-server function of each site, with its estimated in-use bytes. */
  topSites: { site: string; bytes: number }[];
}

/**
 * What an allocation is for, by the first stack frame that says so (innermost first). Patterns are
 * nats-server function names (server/filestore.go, stream.go, consumer.go, client.go).
 */
const PURPOSES: readonly [string, RegExp][] = [
  ['duplicate window (message ids)', /storeMsgId|checkMsgId|purgeMsgIds|ddmap|ddarr/],
  ['consumers', /\(\*consumer\)|addConsumer|newConsumer/],
  [
    'subject index (per-subject state)',
    /stree|\bpsim\b|\(\*fileStore\)\.(?:populate|recover)|fss|SubjectTree|\(\*msgBlock\)\.(?:generatePerSubject|fss)/,
  ],
  ['file store block caches and writes', /\(\*msgBlock\)|\(\*fileStore\)/],
  ['stream (other)', /\(\*stream\)/],
  ['connections and subscriptions', /\(\*client\)|\(\*Sublist\)|readLoop|writeLoop/],
];

/** The server package's prefix in frame names (with or without the module's `/v2`). */
const NATS_PACKAGE = /^github\.com\/nats-io\/nats-server(?:\/v2)?\/server\./;

const num = (text: string, name: string): number =>
  Number(new RegExp(`^# ${name} = (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);

/** Parses the text profile; `rate` is the sampling rate from its header (bytes). */
export function parseGoHeap(text: string): NatsHeap {
  const stats: GoMemStats = {
    heapAlloc: num(text, 'HeapAlloc'),
    heapInuse: num(text, 'HeapInuse'),
    heapSys: num(text, 'HeapSys'),
    heapReleased: num(text, 'HeapReleased'),
    sys: num(text, 'Sys'),
  };
  // `heap/<2 * MemProfileRate>`: the header names twice the sampling rate.
  const rate = Number(/@ heap\/(\d+)/.exec(text)?.[1] ?? 1048576) / 2;
  const byPurpose: Record<string, number> = {};
  const sites = new Map<string, number>();
  for (const block of text.split('\n\n')) {
    const head = /^(\d+): (\d+) \[/.exec(block);
    if (!head) continue;
    const count = Number(head[1]);
    const bytes = Number(head[2]);
    if (count === 0 || bytes === 0) continue;
    // Unsample as pprof does: a sampled object of size s stands for 1/(1-exp(-s/rate)) of them.
    const estimate = bytes / (1 - Math.exp(-bytes / count / rate));
    const frames = [...block.matchAll(/^#\t0x[0-9a-f]+\t(\S+?)(?:\+0x[0-9a-f]+)?\t/gm)].map(
      (m) => m[1]!,
    );
    const purpose = PURPOSES.find(([, re]) => frames.some((f) => re.test(f)))?.[0] ?? 'other';
    byPurpose[purpose] = (byPurpose[purpose] ?? 0) + estimate;
    const site = (frames.find((f) => NATS_PACKAGE.test(f)) ?? frames[0] ?? '?').replace(
      NATS_PACKAGE,
      '',
    );
    sites.set(site, (sites.get(site) ?? 0) + estimate);
  }
  const topSites = [...sites]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 15)
    .map(([site, b]) => ({ site, bytes: Math.round(b) }));
  for (const k of Object.keys(byPurpose)) byPurpose[k] = Math.round(byPurpose[k]!);
  return { stats, byPurpose, topSites };
}

/** Reads nats-server's heap after a forced GC; undefined when the port does not answer. */
export async function readNatsHeap(
  profUrl: string,
): Promise<{ heap: NatsHeap; raw: string } | undefined> {
  try {
    const res = await fetch(`${profUrl}/debug/pprof/heap?debug=1&gc=1`, {
      signal: AbortSignal.timeout(30_000),
    });
    if (!res.ok) return undefined;
    const raw = await res.text();
    return { heap: parseGoHeap(raw), raw };
  } catch {
    return undefined;
  }
}
