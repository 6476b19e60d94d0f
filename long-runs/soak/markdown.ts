/** The soak's report as markdown: what ran, on what machine, and every figure the verdict used. */
import { markdownTable } from '../common/index.js';
import { MAX_LOOP_P99_MS } from './analysis.js';
import type { SoakReport, Trend } from './analysis.js';
import type { LoadFigures } from './load.js';
import type { NatsHeapSample } from './sampler.js';

/** What the run was, for the header. */
export interface RunFacts {
  commit: string;
  startedAt: string;
  durationMs: number;
  warmupMs: number;
  rate: number;
  sampleMs: number;
  runtime: string;
  machine: string;
  node: string;
  natsServer: string;
  retention: string;
}

const mib = (t: Trend | undefined) =>
  t
    ? [`${t.warm}`, `${t.end}`, `${t.slope}`, `${t.growthPercent} %`, `${t.min} - ${t.max}`]
    : ['-', '-', '-', '-', '-'];

/** The report, in markdown. */
export function soakMarkdown(
  facts: RunFacts,
  report: SoakReport,
  load: LoadFigures,
  natsHeaps: readonly NatsHeapSample[],
): string {
  return [
    header(facts, report),
    memorySection(report),
    loopSection(report),
    serverSection(report),
    natsHeapSection(natsHeaps),
    requestSection(load),
  ].join('\n');
}

const MiB = (bytes: number | undefined) =>
  bytes === undefined ? '-' : (bytes / 1048576).toFixed(1);

/** nats-server's live heap over the run, by what it holds. */
function natsHeapSection(heaps: readonly NatsHeapSample[]): string {
  if (heaps.length === 0) return '';
  const purposes = [...new Set(heaps.flatMap((h) => Object.keys(h.heap.byPurpose)))].sort();
  const last = heaps[heaps.length - 1]!;
  return [
    "## nats-server's Go heap after a forced GC (MiB, sampled profile scaled as pprof does)",
    '',
    markdownTable(
      ['min', 'heap in use', 'task records', 'requests in dup window', ...purposes],
      heaps.map((h) => [
        (h.t / 60_000).toFixed(1),
        MiB(h.heap.stats.heapInuse),
        h.taskRecords,
        h.requestsInWindow,
        ...purposes.map((p) => MiB(h.heap.byPurpose[p])),
      ]),
    ),
    'Largest allocation sites at the end (MiB): ' +
      last.heap.topSites.map((s) => `${s.site} ${MiB(s.bytes)}`).join('; ') +
      '.',
    '',
  ].join('\n');
}

const minutes = (ms: number) => `${Math.round(ms / 60_000)} min`;

function header(facts: RunFacts, report: SoakReport): string {
  const out = [
    `# Soak ${report.passed ? 'PASSED' : 'FAILED'}: ${minutes(facts.durationMs)} at ${facts.rate} req/s`,
    '',
    `Commit ${facts.commit}, started ${facts.startedAt}; ${facts.runtime}; warm-up ${minutes(facts.warmupMs)}, ` +
      `samples every ${facts.sampleMs / 1000} s; ${facts.retention}.`,
    `Machine: ${facts.machine}; Node ${facts.node}; ${facts.natsServer}. ` +
      `Load average (1 min) over the run: min ${report.load.min}, mean ${report.load.mean}, max ${report.load.max}.`,
    '',
  ];
  if (!report.passed) out.push('Failures:', '', ...report.failures.map((f) => `- ${f}`), '');
  return out.join('\n');
}

function memorySection(report: SoakReport): string {
  const rows: (string | number)[][] = [];
  for (const [name, p] of Object.entries(report.processes)) {
    rows.push([name, 'RSS', ...mib(p.rssMiB)]);
    if (p.heapUsedMiB) rows.push([name, 'V8 heap used', ...mib(p.heapUsedMiB)]);
  }
  rows.push(['nats-server', '/varz mem', ...mib(report.server.memMiB)]);
  return [
    '## Memory after warm-up (MiB; a least-squares line through every sample: its values at ' +
      'warm-up end and at the end, its slope per 10 minutes)',
    '',
    markdownTable(
      ['process', 'what', 'warm-up end', 'end', 'slope', 'growth', 'samples min - max'],
      rows,
    ),
  ].join('\n');
}

function loopSection(report: SoakReport): string {
  const out = [
    '## Event loop, descriptors, handles',
    '',
    markdownTable(
      [
        'process',
        'loop p99 median ms',
        'loop p99 worst ms',
        `intervals > ${MAX_LOOP_P99_MS} ms`,
        'fds start / warm / end / max',
        'threads start / end',
      ],
      Object.entries(report.processes).map(([name, p]) => [
        name,
        p.loopP99Ms?.median ?? '-',
        p.loopP99Ms?.worst ?? '-',
        p.loopP99Ms?.over50 ?? '-',
        p.fds ? `${p.fds.start} / ${p.fds.warm} / ${p.fds.end} / ${p.fds.max}` : '-',
        p.threads ? `${p.threads.start} / ${p.threads.end}` : '-',
      ]),
    ),
  ];
  for (const [name, p] of Object.entries(report.processes))
    if (p.handles)
      out.push(
        `- ${name} active handles, warm-up end: ${JSON.stringify(p.handles.warm)}; end: ${JSON.stringify(p.handles.end)}`,
      );
  return out.join('\n') + '\n';
}

function serverSection(report: SoakReport): string {
  const s = report.server;
  return [
    '## nats-server',
    '',
    `Consumers ${s.consumers.start} / ${s.consumers.warm} / ${s.consumers.end} (start / warm-up end / end); ` +
      `subscriptions ${s.subscriptions.start} / ${s.subscriptions.warm} / ${s.subscriptions.end}; ` +
      `connections ${s.connections.start} / ${s.connections.end}.`,
    '',
    markdownTable(
      ['stream', 'messages warm-up end', 'messages end', 'MiB warm-up end', 'MiB end'],
      Object.entries(s.streams).map(([name, v]) => [
        name,
        v.warm.messages,
        v.end.messages,
        (v.warm.bytes / 1048576).toFixed(1),
        (v.end.bytes / 1048576).toFixed(1),
      ]),
    ),
  ].join('\n');
}

function requestSection(load: LoadFigures): string {
  const out = [
    '## Requests',
    '',
    `${load.sent} sent, ${load.ok} answered as expected; async tasks ${load.asyncSubmitted} submitted, ` +
      `${load.asyncFinal} seen final. Errors: ${JSON.stringify(load.errors)}.`,
    '',
    markdownTable(
      ['route', 'sent', 'ok', 'p50 ms', 'p99 ms', 'max ms'],
      Object.entries(load.byRoute).map(([route, r]) => [
        route,
        r.sent,
        r.ok,
        r.p50Ms,
        r.p99Ms,
        r.maxMs,
      ]),
    ),
  ];
  if (load.examples.length > 0)
    out.push('Error examples:', '', ...load.examples.map((e) => `- ${e}`), '');
  return out.join('\n');
}
