/**
 * One chaos run, in order: the edge, every executor up, then the load and the killer together
 * (kill k falls due once the load has sent its share of the tasks, so the kills spread over the
 * whole load whatever its pace), every recovery awaited, every task followed to its end, and the
 * processes stopped by PID. What it returns is what `figures.ts` judges.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../nodes/launcher/index.js';
import { ActorState } from '../../protocol/index.js';
import { RUN_TENANT } from '../common/index.js';
import { ChaosClient } from './client.js';
import type { ChaosOptions } from './config.js';
import { watchHeartbeats, type HeartbeatWatch } from './heartbeats.js';
import { Killer, type KillRecord } from './killer.js';
import { CHAOS_MODELS, TaskLedger } from './tasks.js';
import { startChaosTopology, type ChaosTopology } from './topology.js';

/** Submissions waiting for an answer at once; past it the load waits (the count is fixed). */
const MAX_IN_FLIGHT = 512;
/** How long one task's submission is retried, ms. */
const RETRY_WINDOW_MS = 120_000;
/** How long a kill falling due waits for a target before it is tried again, ms. */
const NO_TARGET_PAUSE_MS = 100;

/** What a run saw. */
export interface ChaosResult {
  ledger: TaskLedger;
  kills: KillRecord[];
  loadStartedAt: number;
  loadEndedAt: number;
  settledAt: number;
  /** Every pid that ran a model or a host, and those still alive after the stop. */
  pids: number;
  leftAlive: number[];
}

/** Resolves once every model of every host beats as running in a child process. */
async function everyExecutorUp(beats: HeartbeatWatch, topology: ChaosTopology): Promise<void> {
  const want = topology.hosts.length * CHAOS_MODELS.length;
  const up = () =>
    beats
      .latest()
      .filter((s) => s.beat.state === ActorState.Running && s.beat.isolation === 'child-process')
      .length;
  const seen = await beats.waitFor(() => up() >= want, 60_000);
  if (!seen) throw new Error(`only ${up()} of ${want} executors came up`);
}

/** Sends every task at the rate, open loop but bounded; `onSent` after each. */
async function runLoad(
  o: ChaosOptions,
  ledger: TaskLedger,
  client: ChaosClient,
  onSent: (sent: number) => void,
): Promise<void> {
  const inFlight = new Set<Promise<void>>();
  const start = Date.now();
  for (let n = 0; n < o.tasks; n++) {
    while (inFlight.size >= MAX_IN_FLIGHT) await Promise.race(inFlight);
    const task = ledger.create(n, o.syncShare);
    const p = client.submit(task, Date.now() + RETRY_WINDOW_MS).finally(() => inFlight.delete(p));
    inFlight.add(p);
    onSent(n + 1);
    const wait = start + ((n + 1) * 1000) / o.rate - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  await Promise.all(inFlight);
}

/** Kills `o.kills` times, kill k once the load has sent (k+1)/(kills+1) of the tasks. */
async function runKiller(o: ChaosOptions, killer: Killer, sent: () => number): Promise<void> {
  for (let k = 0; k < o.kills; k++) {
    const due = Math.ceil(((k + 1) * o.tasks) / (o.kills + 1));
    while (sent() < due) await new Promise((r) => setTimeout(r, 20));
    while (!killer.killOne()) await new Promise((r) => setTimeout(r, NO_TARGET_PAUSE_MS));
  }
}

/** True while `pid` is one of this run's hosts or executors (a reused pid is someone else's). */
function alive(pid: number): boolean {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes(PROJECT_ROOT) && /executor-entry|actor-host/.test(cmdline);
  } catch {
    return false;
  }
}

/** Runs the chaos; `onTopology` hears of the edge at once, so Ctrl-C can stop it. */
export async function runChaos(
  o: ChaosOptions,
  logDir: string,
  say: (text: string) => void,
  onTopology: (t: ChaosTopology) => void,
): Promise<ChaosResult> {
  const topology = await startChaosTopology({ hosts: o.hosts, logDir, compiled: o.compiled });
  onTopology(topology);
  const admin = await topology.edge.admin();
  const beats = await watchHeartbeats(admin, topology.region);
  await everyExecutorUp(beats, topology);
  say(
    `chaos: ${o.hosts} hosts x ${CHAOS_MODELS.length} executors up; gateway ${topology.gatewayUrl}`,
  );
  const ledger = new TaskLedger(admin, topology.region, RUN_TENANT);
  const client = new ChaosClient(topology.gatewayUrl, topology.edge.apiKey, ledger);
  const killer = new Killer(topology, beats, CHAOS_MODELS, o.hostShare);
  let sent = 0;
  const loadStartedAt = Date.now();
  const progress = setInterval(() => {
    const back = killer.kills.filter((k) => k.restartMs !== undefined).length;
    say(`chaos: ${sent}/${o.tasks} sent, ${killer.kills.length} kills (${back} back)`);
  }, 30_000);
  const killing = runKiller(o, killer, () => sent);
  await runLoad(o, ledger, client, (n) => (sent = n));
  const loadEndedAt = Date.now();
  await killing;
  clearInterval(progress);
  say(`chaos: load done; ${killer.kills.length} kills; waiting for recoveries, then every task`);
  await killer.recovered();
  await client.settle(Date.now() + o.settleMs);
  const settledAt = Date.now();
  await admin.flush();
  await new Promise((r) => setTimeout(r, 500)); // the last events travel on core NATS
  ledger.close();
  beats.stop();
  const pids = new Set([...beats.pids, ...killer.kills.map((k) => k.pid)]);
  for (const h of topology.hosts) if (h.current) pids.add(h.current.pid);
  await topology.stop();
  await new Promise((r) => setTimeout(r, 2_000)); // executors see their host's channel close
  return {
    ledger,
    kills: killer.kills,
    loadStartedAt,
    loadEndedAt,
    settledAt,
    pids: pids.size,
    leftAlive: [...pids].filter(alive),
  };
}

/** Where the nodes' logs go within a report dir. */
export const chaosLogDir = (reportDir: string, stamp: string): string =>
  join(reportDir, `${stamp}-logs`);
