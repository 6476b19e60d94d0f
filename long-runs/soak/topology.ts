/**
 * The soak's edge, as `npm start` runs it: one nats-server, then the actor host (every built-in
 * model, worker-thread executors), the gateway and the controller, each its own process and NATS
 * user, each with a Prometheus endpoint on a free loopback port (`VIGIL_METRICS_PORT=0`, announced
 * in its ready line).
 */
import { join } from 'node:path';
import type { NodeProcess } from '../../nodes/launcher/index.js';
import { RUN_TENANT, startRunEdge, type RunEdge } from '../common/index.js';

/** The region's name: `npm start`'s. */
const REGION = 'local';

/** A process the soak samples. */
export interface SampledProcess {
  name: string;
  pid: number;
  /** Its `/metrics` URL (nodes only). */
  metricsUrl?: string;
}

/** The running soak edge. */
export interface SoakTopology {
  readonly edge: RunEdge;
  readonly gatewayUrl: string;
  readonly processes: readonly SampledProcess[];
  /** nats-server's monitoring base URL. */
  readonly monitorUrl: string;
  stop(): Promise<void>;
}

/** Options of {@link startSoakTopology}. */
export interface SoakTopologyOptions {
  logDir: string;
  compiled: boolean;
  taskRetentionMs?: number;
  duplicateWindowMs?: number;
  /** Extra `NODE_OPTIONS` of every node (a heap-snapshot signal). */
  nodeOptions?: string;
}

/** Starts the server, provisions, then actor host, gateway and controller, in `npm start`'s order. */
export async function startSoakTopology(options: SoakTopologyOptions): Promise<SoakTopology> {
  const edge = await startRunEdge({
    region: REGION,
    logDir: options.logDir,
    compiled: options.compiled,
    profiling: true,
    assets: {
      ...(options.taskRetentionMs === undefined
        ? {}
        : { taskRetentionMs: options.taskRetentionMs }),
      ...(options.duplicateWindowMs === undefined
        ? {}
        : { duplicateWindowMs: options.duplicateWindowMs }),
    },
  });
  try {
    const common = {
      VIGIL_METRICS_PORT: '0',
      ...(options.nodeOptions ? { NODE_OPTIONS: options.nodeOptions } : {}),
    };
    const host = await edge.startNode('actor-host', 'actor-host', {
      ...edge.nodeEnv(`actor-host-${REGION}`),
      ...common,
    });
    const gateway = await edge.startNode('gateway', 'gateway', {
      ...edge.nodeEnv('gateway'),
      ...common,
      VIGIL_GATEWAY_PORT: '0',
      VIGIL_API_KEYS: `${RUN_TENANT}:${edge.apiKey}`,
    });
    const sys = edge.credentials.user('sys');
    const controller = await edge.startNode('controller', 'controller', {
      ...edge.nodeEnv('controller'),
      ...common,
      VIGIL_CONTROLLER_REGIONS: REGION,
      VIGIL_SYS_NATS_NKEY: sys.seedFile,
      VIGIL_SYS_NATS_INBOX_PREFIX: sys.inboxPrefix,
    });
    const node = (name: string, p: NodeProcess): SampledProcess => ({
      name,
      pid: p.pid,
      ...(typeof p.ready['metricsUrl'] === 'string' ? { metricsUrl: p.ready['metricsUrl'] } : {}),
    });
    return {
      edge,
      gatewayUrl: String(gateway.ready['url']),
      processes: [
        node('gateway', gateway),
        node('actor-host', host),
        node('controller', controller),
        { name: 'nats-server', pid: edge.server.pid },
      ],
      monitorUrl: edge.server.monitorUrl!,
      stop: () => edge.stop(),
    };
  } catch (err) {
    await edge.stop();
    throw err;
  }
}

/** Where the nodes' logs go within a report dir. */
export const logDirOf = (reportDir: string, stamp: string): string =>
  join(reportDir, `${stamp}-logs`);
