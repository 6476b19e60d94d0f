/**
 * Samples every process of the soak at a fixed interval: RSS, open descriptors and threads from
 * `/proc`; V8 heap, event-loop delay and active handles from each node's Prometheus endpoint
 * (the runtime instrumentation: the delay histogram is reset at every scrape, so each sample's
 * p99 is that interval's); nats-server's own view from its monitoring port (`/varz`: memory,
 * connections, subscriptions; `/jsz`: streams, their messages and bytes, consumers).
 */
import {
  loadAverage,
  openFds,
  rssKiB,
  scrape,
  threads,
  type NatsHeap,
  type PromSample,
} from '../common/index.js';
import type { SampledProcess } from './topology.js';

/** One process at one moment. */
export interface ProcessSample {
  rssMiB?: number;
  fds?: number;
  threads?: number;
  /** V8 heap used, every space, MiB (nodes). */
  heapUsedMiB?: number;
  /** Heap spaces' size (what V8 holds from the OS), MiB. */
  heapTotalMiB?: number;
  /** This interval's event-loop delay p99 and max, ms (nodes). */
  loopP99Ms?: number;
  loopMaxMs?: number;
  /** Active handles by type (Timeout, TCPSocketWrap, ...), nodes. */
  handles?: Record<string, number>;
}

/** What nats-server reports about itself and its JetStream. */
export interface ServerSample {
  memMiB?: number;
  connections?: number;
  subscriptions?: number;
  slowConsumers?: number;
  consumers?: number;
  /** Per stream: messages and bytes held, consumers, and the last sequence ever stored. */
  streams?: Record<string, { messages: number; bytes: number; consumers: number; lastSeq: number }>;
  /** JetStream memory and file storage used, bytes. */
  jsMemory?: number;
  jsStorage?: number;
}

/** nats-server's live heap at one moment, beside what its streams held then. */
export interface NatsHeapSample {
  t: number;
  heap: NatsHeap;
  /** Task records held (the task bucket's messages). */
  taskRecords: number;
  /** Requests stored within the last duplicate window (their ids are what the window holds). */
  requestsInWindow: number;
}

/** One sample of everything. */
export interface Sample {
  /** ms since the load started. */
  t: number;
  at: string;
  load: [number, number, number];
  processes: Record<string, ProcessSample>;
  server: ServerSample;
  /** Requests answered and errors so far. */
  sent: number;
  errors: number;
}

const MIB = 1024 * 1024;
const mib = (bytes: number) => Math.round((bytes / MIB) * 100) / 100;

/** Sums the samples of `name` (over every label set). */
function total(samples: readonly PromSample[], name: string): number | undefined {
  const hits = samples.filter((s) => s.name === name);
  return hits.length === 0 ? undefined : hits.reduce((sum, s) => sum + s.value, 0);
}

/** One process's sample: `/proc` and, for nodes, its metrics. */
async function sampleProcess(p: SampledProcess): Promise<ProcessSample> {
  const out: ProcessSample = {};
  const rss = rssKiB(p.pid);
  if (rss !== undefined) out.rssMiB = Math.round((rss / 1024) * 100) / 100;
  const fds = openFds(p.pid);
  if (fds !== undefined) out.fds = fds;
  const t = threads(p.pid);
  if (t !== undefined) out.threads = t;
  if (!p.metricsUrl) return out;
  const metrics = await scrape(p.metricsUrl);
  if (!metrics) return out;
  const used = total(metrics, 'v8js_memory_heap_used');
  if (used !== undefined) out.heapUsedMiB = mib(used);
  const size = total(metrics, 'v8js_memory_heap_space_size');
  if (size !== undefined) out.heapTotalMiB = mib(size);
  const p99 = total(metrics, 'nodejs_eventloop_delay_p99');
  if (p99 !== undefined) out.loopP99Ms = Math.round(p99 * 10_000) / 10;
  const max = total(metrics, 'nodejs_eventloop_delay_max');
  if (max !== undefined) out.loopMaxMs = Math.round(max * 10_000) / 10;
  out.handles = {};
  for (const s of metrics.filter((m) => m.name === 'v8js_resource_active'))
    out.handles[s.labels['v8js_resource_type'] ?? '?'] = s.value;
  return out;
}

interface Varz {
  mem?: number;
  connections?: number;
  subscriptions?: number;
  slow_consumers?: number;
}

interface Jsz {
  memory?: number;
  storage?: number;
  consumers?: number;
  account_details?: {
    stream_detail?: {
      name: string;
      state: { messages: number; bytes: number; consumer_count: number; last_seq: number };
    }[];
  }[];
}

async function getJson<T>(url: string): Promise<T | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
    return res.ok ? ((await res.json()) as T) : undefined;
  } catch {
    return undefined;
  }
}

/** nats-server's `/varz` and `/jsz` (streams of every account). */
async function sampleServer(monitorUrl: string): Promise<ServerSample> {
  const [varz, jsz] = await Promise.all([
    getJson<Varz>(`${monitorUrl}/varz`),
    getJson<Jsz>(`${monitorUrl}/jsz?accounts=true&streams=true`),
  ]);
  const out: ServerSample = {};
  if (varz?.mem !== undefined) out.memMiB = mib(varz.mem);
  if (varz?.connections !== undefined) out.connections = varz.connections;
  if (varz?.subscriptions !== undefined) out.subscriptions = varz.subscriptions;
  if (varz?.slow_consumers !== undefined) out.slowConsumers = varz.slow_consumers;
  if (jsz) {
    if (jsz.consumers !== undefined) out.consumers = jsz.consumers;
    if (jsz.memory !== undefined) out.jsMemory = jsz.memory;
    if (jsz.storage !== undefined) out.jsStorage = jsz.storage;
    out.streams = {};
    for (const account of jsz.account_details ?? [])
      for (const s of account.stream_detail ?? [])
        out.streams[s.name] = {
          messages: s.state.messages,
          bytes: s.state.bytes,
          consumers: s.state.consumer_count,
          lastSeq: s.state.last_seq,
        };
  }
  return out;
}

/** Takes one sample of everything. */
export async function takeSample(
  processes: readonly SampledProcess[],
  monitorUrl: string,
  startedAt: number,
  load: { sent: number; errors: number },
): Promise<Sample> {
  const at = Date.now();
  const [server, ...each] = await Promise.all([
    sampleServer(monitorUrl),
    ...processes.map((p) => sampleProcess(p)),
  ]);
  return {
    t: at - startedAt,
    at: new Date(at).toISOString(),
    load: loadAverage(),
    processes: Object.fromEntries(processes.map((p, i) => [p.name, each[i]!])),
    server,
    ...load,
  };
}
