/**
 * The chaos run's edge, shaped like the chaos suite's: one nats-server, several actor hosts whose
 * models run in child processes (so each executor has a pid to kill; the host's supervisor
 * restarts it), one gateway, every process its own NATS user. Short heartbeats and ack wait, so
 * that a kill is seen and its work redelivered within seconds; restart backoff capped at 1 s and
 * no escalation, since kills every second or two never let an executor stay up long enough to
 * reset it. A host killed by the run is started again by {@link ChaosTopology.restartHost}.
 */
import type { NodeProcess } from '../../nodes/launcher/index.js';
import { RUN_TENANT, startRunEdge, type RunEdge } from '../common/index.js';

const REGION = 'chaos';
/** Heartbeat interval, ms: a restart shows in the next beat (beats are also written on change). */
export const HEARTBEAT_MS = 300;
/** The consumers' ack wait, ms: work held by a killed host is delivered again after it. */
export const ACK_WAIT_MS = 2_000;
/** Supervision: no escalation, backoff from 50 ms doubling to at most 1 s. */
export const RESTART = { maxRestarts: 10_000, withinMs: 60_000, initialMs: 50, maxMs: 1_000 };

/** One actor host slot: the process behind it changes when it is killed and restarted. */
export interface HostSlot {
  readonly label: string;
  current: NodeProcess | undefined;
  /** The host id of the current process (its heartbeats' `host`). */
  hostId: string | undefined;
}

/** The running chaos edge. */
export interface ChaosTopology {
  readonly edge: RunEdge;
  readonly region: string;
  readonly gatewayUrl: string;
  readonly hosts: readonly HostSlot[];
  /** Starts the slot's host again (after a kill); resolves when it is ready. */
  restartHost(slot: HostSlot): Promise<NodeProcess>;
  stop(): Promise<void>;
}

/** Options of {@link startChaosTopology}. */
export interface ChaosTopologyOptions {
  hosts: number;
  logDir: string;
  compiled: boolean;
}

/** Starts the server, the hosts, then the gateway. */
export async function startChaosTopology(options: ChaosTopologyOptions): Promise<ChaosTopology> {
  const edge = await startRunEdge({
    region: REGION,
    logDir: options.logDir,
    compiled: options.compiled,
    assets: { heartbeatIntervalMs: HEARTBEAT_MS },
  });
  const hostEnv = {
    ...edge.nodeEnv(`actor-host-${REGION}`),
    VIGIL_LOG_LEVEL: 'warn',
    VIGIL_ISOLATION: 'child-process',
    VIGIL_CONCURRENCY: '4',
    VIGIL_HEARTBEAT_MS: String(HEARTBEAT_MS),
    VIGIL_ACK_WAIT_MS: String(ACK_WAIT_MS),
    VIGIL_RETRY_SCHEDULE_MS: '50,100',
    // Each crash counts as an attempt of every task it interrupts; a task interrupted ten times
    // in a row would be dead-lettered by design, which is not what this run is about.
    VIGIL_MAX_ATTEMPTS: '10',
    VIGIL_RESTART: JSON.stringify(RESTART),
    VIGIL_ECHO_FAULTS: JSON.stringify({ enabled: true }),
  };
  let starts = 0;
  const restartHost = async (slot: HostSlot): Promise<NodeProcess> => {
    const host = await edge.startNode('actor-host', `${slot.label}-${++starts}`, hostEnv);
    slot.current = host;
    slot.hostId = String(host.ready['host']);
    return host;
  };
  try {
    const hosts: HostSlot[] = [];
    for (let i = 1; i <= options.hosts; i++) {
      const slot: HostSlot = { label: `actor-host-${i}`, current: undefined, hostId: undefined };
      await restartHost(slot);
      hosts.push(slot);
    }
    const gateway = await edge.startNode('gateway', 'gateway', {
      ...edge.nodeEnv('gateway'),
      VIGIL_LOG_LEVEL: 'warn',
      VIGIL_GATEWAY_PORT: '0',
      VIGIL_API_KEYS: `${RUN_TENANT}:${edge.apiKey}`,
    });
    return {
      edge,
      region: REGION,
      gatewayUrl: String(gateway.ready['url']),
      hosts,
      restartHost,
      stop: () => edge.stop(),
    };
  } catch (err) {
    await edge.stop();
    throw err;
  }
}
