/**
 * Summarises a V8 CPU profile (`.cpuprofile`, as recorded by `BENCH_CPU_PROF=1 npm run bench`):
 * self time by package and by function, and total (inclusive) time of the project's own functions,
 * which is where "what does Vigil's gateway do per request that the floor does not" shows up.
 * A flame graph tells more; this is the quick look in a terminal.
 *
 *   node --import tsx bench/cpu-profile-top.ts bench/results/profiles/vigil-gateway.cpuprofile [top]
 */
import { readFileSync } from 'node:fs';
import { dirname, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { PROJECT_ROOT } from '../nodes/launcher/index.js';

/** Rows printed per table unless the command line says otherwise. */
const DEFAULT_TOP = 25;

const profileSchema = z.object({
  nodes: z.array(
    z.object({
      id: z.number(),
      callFrame: z.object({
        functionName: z.string(),
        url: z.string(),
        lineNumber: z.number(),
      }),
      children: z.array(z.number()).optional(),
    }),
  ),
  samples: z.array(z.number()),
  timeDeltas: z.array(z.number()),
});

type CallFrame = z.infer<typeof profileSchema>['nodes'][number]['callFrame'];

/** Frames that are not work: their samples are left out of every percentage. */
const NOT_WORK = new Set(['(idle)', '(root)']);

/** A script URL as a path: relative to the project, or from `node_modules/` on. */
function pathOf(url: string): string {
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) return url.slice(nm);
  return url.startsWith('file://') ? relative(PROJECT_ROOT, fileURLToPath(url)) : url;
}

/** The package (`node_modules/<pkg>`), the project folder, `node: core`, or the V8 pseudo-frame. */
function areaOf(frame: CallFrame): string {
  const { url } = frame;
  if (url === '') return frame.functionName || '(native)';
  if (url.startsWith('node:')) return 'node: core';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm?.[1]) return nm[1];
  return dirname(pathOf(url));
}

function isProjectCode(frame: CallFrame): boolean {
  return frame.url.startsWith('file://') && !frame.url.includes('/node_modules/');
}

function label(frame: CallFrame): string {
  const name = frame.functionName || '(anonymous)';
  if (frame.url === '') return name;
  return `${name}  ${pathOf(frame.url)}:${frame.lineNumber + 1}`;
}

function add(totals: Map<string, number>, key: string, us: number): void {
  totals.set(key, (totals.get(key) ?? 0) + us);
}

function table(title: string, totals: Map<string, number>, all: number, top: number): void {
  process.stdout.write(`\n${title}\n`);
  const rows = [...totals.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
  for (const [name, us] of rows) {
    const percent = ((us / all) * 100).toFixed(1).padStart(5);
    process.stdout.write(`${percent}%  ${(us / 1000).toFixed(0).padStart(6)} ms  ${name}\n`);
  }
}

function summarise(file: string, top: number): void {
  const profile = profileSchema.parse(JSON.parse(readFileSync(file, 'utf8')));
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parentOf = new Map<number, number>();
  for (const node of profile.nodes)
    for (const child of node.children ?? []) parentOf.set(child, node.id);

  const selfByArea = new Map<string, number>();
  const selfByFunction = new Map<string, number>();
  const totalByProjectFunction = new Map<string, number>();
  let work = 0;
  profile.samples.forEach((id, i) => {
    const us = profile.timeDeltas[i] ?? 0;
    const frame = byId.get(id)?.callFrame;
    if (!frame || NOT_WORK.has(frame.functionName)) return;
    work += us;
    add(selfByArea, areaOf(frame), us);
    add(selfByFunction, label(frame), us);
    // Each project function on the stack gets the sample once, however deep its recursion.
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parentOf.get(at)) {
      const onStack = byId.get(at)?.callFrame;
      if (!onStack || !isProjectCode(onStack)) continue;
      const key = label(onStack);
      if (seen.has(key)) continue;
      seen.add(key);
      add(totalByProjectFunction, key, us);
    }
  });
  process.stdout.write(`${file}: ${(work / 1e6).toFixed(2)} s of CPU sampled (idle left out)\n`);
  table('Self time by package / folder:', selfByArea, work, top);
  table('Self time by function:', selfByFunction, work, top);
  table(
    "Total time (self + callees) of the project's own functions:",
    totalByProjectFunction,
    work,
    top,
  );
}

const [file, topArg] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: cpu-profile-top.ts <file.cpuprofile> [top]\n');
  process.exitCode = 2;
} else {
  summarise(file, topArg ? Number(topArg) : DEFAULT_TOP);
}
