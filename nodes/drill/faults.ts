/**
 * The faults a drill injects. Each names the topology it needs, does its damage with SIGKILL (no
 * process gets to say goodbye), and watches, in the background and bounded in time, for the part
 * of the system that must bring it back: the actor host's supervision for an executor, the drill's
 * supervisor for a host, a Raft election for a stream leader, the operator (here the drill, at a
 * fixed point) for a whole region.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { assetNames } from '../../protocol/index.js';
import { readHeartbeats } from '../cli/index.js';
import { ConfigError } from '../common/index.js';
import type { NatsServerProcess, RegionSpec } from '../launcher/index.js';
import { groupsLedBy, watchElections } from './elections.js';
import { regionServers, type DrillTopology } from './topology.js';

/** The faults, by name. */
export const FaultName = {
  KillActor: 'kill-actor',
  KillHost: 'kill-host',
  KillNatsNode: 'kill-nats-node',
  KillRegion: 'kill-region',
} as const;

/** One of the {@link FaultName} values. */
export type FaultName = (typeof FaultName)[keyof typeof FaultName];

/** Every fault, in the order `drill all` runs them. */
export const ALL_FAULTS: readonly FaultName[] = Object.values(FaultName);

/** How long a watcher waits for recovery before it reports none. */
const RECOVERY_TIMEOUT_MS = 60_000;
/** Poll interval of the watchers. */
const POLL_MS = 100;

/** What an injected fault did and, once known, what recovered. */
export interface Injection {
  /** What was hit, in words (`actor-host-eu pid 1234`). */
  target: string;
  killedPids: number[];
  /** Filled in by the watcher: recovery figures (ms) and names. */
  recovery: Record<string, unknown>;
  /** Resolves when the watcher is done (recovered or timed out). */
  watched: Promise<void>;
  /** Repairs what no automation repairs (restarts killed servers); called at the repair point. */
  repair?: () => Promise<void>;
}

/** A fault: its default topology, the settings it needs, and how it is done. */
export interface Fault {
  name: FaultName;
  /** One line for the report and `--help`. */
  summary: string;
  defaultRegions: readonly string[];
  defaultNodes: number;
  /** Extra actor-host environment this fault needs. */
  actorEnv: Record<string, string>;
  /** @throws ConfigError when the topology cannot run this fault. */
  check(regions: readonly RegionSpec[]): void;
  inject(topology: DrillTopology, regions: readonly RegionSpec[]): Promise<Injection>;
}

const sleep = (ms: number) => new Promise<undefined>((r) => setTimeout(() => r(undefined), ms));

/** The JetStream meta leader's server name, as `server`'s monitoring endpoint sees it. */
async function metaLeader(server: NatsServerProcess): Promise<string | undefined> {
  if (!server.monitorUrl) return undefined;
  const res = await fetch(`${server.monitorUrl}/jsz`, { signal: AbortSignal.timeout(2_000) });
  const jsz = (await res.json()) as { meta_cluster?: { leader?: string } };
  return jsz.meta_cluster?.leader || undefined;
}

/** Polls `probe` until it returns a value or the recovery timeout passes. */
async function watch<T>(probe: () => Promise<T | undefined>): Promise<T | undefined> {
  const deadline = Date.now() + RECOVERY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch {
      // the thing watched is still coming back
    }
    await sleep(POLL_MS);
  }
  return undefined;
}

const killActor: Fault = {
  name: FaultName.KillActor,
  summary:
    "SIGKILL the echo model's executor process (child-process isolation) in the first region",
  defaultRegions: ['eu'],
  defaultNodes: 1,
  // A child process has a pid to kill; heartbeats every second show the new one soon.
  actorEnv: {
    VIGIL_MODEL_ISOLATION: JSON.stringify({ echo: 'child-process' }),
    VIGIL_HEARTBEAT_MS: '1000',
  },
  check: () => undefined,
  async inject(topology, regions) {
    const region = regions[0]!.name;
    const nc = await topology.admin(region);
    const echoBeat = async () =>
      (await readHeartbeats(nc, region)).find((b) => b.model === 'echo' && b.pid > 0);
    const before = await watch(echoBeat);
    if (!before) throw new ConfigError(`no echo executor with a pid in region ${region}`);
    topology.notePid('echo-executor', before.pid);
    const killedAt = Date.now();
    process.kill(before.pid, 'SIGKILL');
    const injection: Injection = {
      target: `echo executor pid ${before.pid} on ${before.host}`,
      killedPids: [before.pid],
      recovery: {},
      watched: Promise.resolve(),
    };
    injection.watched = watch(async () => {
      const beat = await echoBeat();
      return beat && beat.pid !== before.pid ? beat : undefined;
    }).then((after) => {
      if (!after) return;
      topology.notePid('echo-executor', after.pid);
      // Seen through a heartbeat: up to one beat interval later than the restart itself.
      injection.recovery['executorSeenAgainMs'] = after.at - killedAt;
      injection.recovery['newExecutorPid'] = after.pid;
      injection.recovery['executorRestarts'] = after.restarts;
    });
    return injection;
  },
};

const killHost: Fault = {
  name: FaultName.KillHost,
  summary: "SIGKILL the first region's actor host; the drill's supervisor starts it again",
  defaultRegions: ['eu'],
  defaultNodes: 1,
  actorEnv: {},
  check: () => undefined,
  inject(topology, regions) {
    const host = topology.actorHosts.get(regions[0]!.name)!;
    const victim = host.current;
    if (!victim) return Promise.reject(new ConfigError(`${host.label} is not running`));
    const killedAt = Date.now();
    victim.signal('SIGKILL');
    const injection: Injection = {
      target: `${host.label} pid ${victim.pid}`,
      killedPids: [victim.pid],
      recovery: {},
      watched: Promise.resolve(),
    };
    injection.watched = Promise.race([host.readyAfter(killedAt), sleep(RECOVERY_TIMEOUT_MS)]).then(
      (next) => {
        if (!next) return;
        injection.recovery['hostRestartMs'] = next.readyAt - killedAt;
        injection.recovery['newHostPid'] = next.pid;
      },
    );
    return Promise.resolve(injection);
  },
};

const killNatsNode: Fault = {
  name: FaultName.KillNatsNode,
  summary:
    "SIGKILL the server leading the first region's request stream (R3); restart it at the repair point",
  defaultRegions: ['eu'],
  defaultNodes: 3,
  actorEnv: {},
  check(regions) {
    if (regions[0]!.nodes < 3)
      throw new ConfigError('kill-nats-node needs --nodes 3 or more (an R3 stream to elect from)');
  },
  async inject(topology, regions) {
    const region = regions[0]!.name;
    // A short request timeout: a poll that waits on a dead leader must not blur the election time.
    const jsm = await jetstreamManager(await topology.admin(region), { timeout: 1_000 });
    const stream = assetNames.requestStream(region);
    const oldLeader = (await jsm.streams.info(stream)).cluster?.leader;
    const server = regionServers(topology, region).find((s) => s.options.serverName === oldLeader);
    if (!server) throw new ConfigError(`the leader of ${stream} (${oldLeader}) is not one of ours`);
    // Every group the victim leads is elected anew; advisories time each, seen from a survivor.
    const led = await groupsLedBy(jsm, oldLeader!);
    const survivors = regionServers(topology, region).filter((s) => s !== server);
    const metaBefore = await metaLeader(survivors[0]!).catch(() => undefined);
    let killedAt = 0;
    const elections = watchElections(
      await topology.admin(
        region,
        survivors.map((s) => s.url),
      ),
      () => killedAt,
    );
    const killedPid = server.pid;
    killedAt = Date.now();
    await server.kill('SIGKILL');
    const injection: Injection = {
      target: `nats-server ${oldLeader} pid ${killedPid} (leader of ${stream})`,
      killedPids: [killedPid],
      recovery: { oldLeader, ledByVictim: led.join(' '), metaLeaderBefore: metaBefore },
      watched: Promise.resolve(),
      async repair() {
        injection.recovery['restartedMs'] = Date.now() - killedAt;
        const restarted = await server.restart();
        topology.notePid(`nats-${oldLeader}`, restarted.pid);
        injection.recovery['restartedPid'] = restarted.pid;
      },
    };
    // A leader elected after the kill: another server, or the victim itself when its restart
    // came before the survivors agreed (then only its advisory tells the old leader from the new).
    const streamWatch = watch(async () => {
      const leader = (await jsm.streams.info(stream)).cluster?.leader;
      const electedAnew = leader !== oldLeader || elections.leaders[stream] === leader;
      return leader && electedAnew ? leader : undefined;
    }).then((leader) => {
      if (!leader) return;
      injection.recovery['newLeader'] = leader;
      injection.recovery['leaderSeenByPollMs'] = Date.now() - killedAt;
    });
    injection.watched = Promise.all([
      streamWatch,
      elections.until(led, RECOVERY_TIMEOUT_MS).then(() => {
        elections.stop();
        // From the new leaders' advisories: the server's own share of the outage.
        injection.recovery['leaderElectedMs'] = elections.elected[stream];
        injection.recovery['electedLeader'] = elections.leaders[stream];
        injection.recovery['electedMs'] = Object.entries(elections.elected)
          .filter(([group]) => led.includes(group))
          .map(([group, ms]) => `${group}=${ms}`)
          .join(' ');
      }),
    ]).then(() => undefined);
    return injection;
  },
};

const killRegion: Fault = {
  name: FaultName.KillRegion,
  summary:
    'SIGKILL every server of the first region and its actor host; the others serve on; the region is restarted from its disks at the repair point',
  // Three regions: JetStream's meta group spans the supercluster, and a majority of its servers
  // must survive for it to keep a leader (two regions of equal size lose it with either).
  defaultRegions: ['eu', 'us', 'ap'],
  defaultNodes: 1,
  actorEnv: {},
  check(regions) {
    if (regions.length < 2)
      throw new ConfigError('kill-region needs two regions or more (--regions)');
  },
  async inject(topology, regions) {
    const region = regions[0]!.name;
    const servers = regionServers(topology, region);
    const host = topology.actorHosts.get(region)!;
    const survivor = topology.supercluster.servers.find((s) => !servers.includes(s))!;
    const metaBefore = await metaLeader(survivor).catch(() => undefined);
    topology.setRegionDown(region, true);
    const killedAt = Date.now();
    const killedPids = [...servers.map((s) => s.pid), ...(host.current ? [host.current.pid] : [])];
    host.current?.signal('SIGKILL');
    await Promise.all(servers.map((s) => s.kill('SIGKILL')));
    const total = regions.reduce((sum, r) => sum + r.nodes, 0);
    const injection: Injection = {
      target: `region ${region}: ${servers.length} nats-server(s) and ${host.label}`,
      killedPids,
      recovery: {
        metaQuorumSurvives: total - servers.length > total / 2,
        metaLeaderBefore: metaBefore,
      },
      watched: Promise.resolve(),
      async repair() {
        const repairAt = Date.now();
        const restarted = await Promise.all(servers.map((s) => s.restart()));
        for (const s of restarted) topology.notePid(`nats-${s.options.serverName}`, s.pid);
        topology.setRegionDown(region, false);
        injection.recovery['repairAfterFaultMs'] = repairAt - killedAt;
        injection.recovery['serversRestartedMs'] = Date.now() - repairAt;
        injection.watched = Promise.race([
          host.readyAfter(repairAt),
          sleep(RECOVERY_TIMEOUT_MS),
        ]).then((next) => {
          if (next) injection.recovery['hostBackAfterRepairMs'] = next.readyAt - repairAt;
        });
      },
    };
    // A leader among the survivors: the supercluster's JetStream API answers again.
    const metaWatch = watch(async () => {
      const leader = await metaLeader(survivor);
      return leader && !servers.some((s) => s.options.serverName === leader) ? leader : undefined;
    }).then((leader) => {
      injection.recovery['metaLeaderAfter'] = leader ?? 'none';
      if (leader) injection.recovery['metaLeaderAmongSurvivorsMs'] = Date.now() - killedAt;
    });
    injection.watched = metaWatch;
    return injection;
  },
};

/** The faults by name. */
export const FAULTS: ReadonlyMap<FaultName, Fault> = new Map(
  [killActor, killHost, killNatsNode, killRegion].map((f) => [f.name, f]),
);
