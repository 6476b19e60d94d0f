/**
 * `vigil actors`: who is alive, from the region's heartbeat bucket. A beat older than three
 * intervals is shown as `silent` (the bucket drops it soon after).
 */
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  actorHeartbeatSchema,
  assetNames,
  decodeAs,
  isHeartbeatFresh,
  type ActorHeartbeat,
} from '../../protocol/index.js';
import type { Output } from './dlq-commands.js';

/** Every heartbeat in the region's actors bucket, by model then host. */
export async function readHeartbeats(
  nc: NatsConnection,
  region: string,
): Promise<ActorHeartbeat[]> {
  const kv = await new Kvm(nc).open(assetNames.actorBucket(region));
  const beats: ActorHeartbeat[] = [];
  for await (const key of await kv.keys()) {
    const entry = await kv.get(key);
    if (entry?.operation !== 'PUT') continue;
    try {
      beats.push(decodeAs(actorHeartbeatSchema, entry.value, 'heartbeat'));
    } catch {
      // an unreadable beat is left out; the gateway ignores it too
    }
  }
  return beats.sort((a, b) => a.model.localeCompare(b.model) || a.host.localeCompare(b.host));
}

/** Prints the heartbeats as a table, or JSON. */
export async function actorsList(
  nc: NatsConnection,
  region: string,
  json: boolean,
  out: Output,
): Promise<void> {
  const beats = await readHeartbeats(nc, region);
  if (json) {
    out.write(JSON.stringify(beats, null, 2) + '\n');
    return;
  }
  if (beats.length === 0) {
    out.write(`no actor heartbeats in region ${region}\n`);
    return;
  }
  const now = Date.now();
  const rows = beats.map((b) => [
    b.model,
    b.host,
    isHeartbeatFresh(b, now) ? b.state : 'silent',
    b.breaker,
    b.isolation,
    String(b.pid),
    String(b.inFlight),
    String(b.processed),
    String(b.errors),
    String(b.restarts),
    `${b.latencyMs.p50.toFixed(1)}/${b.latencyMs.p99.toFixed(1)}`,
    `${((now - b.at) / 1000).toFixed(1)}s`,
  ]);
  const header = [
    'MODEL',
    'HOST',
    'STATE',
    'BREAKER',
    'ISOLATION',
    'PID',
    'IN-FLIGHT',
    'DONE',
    'ERRORS',
    'RESTARTS',
    'P50/P99 MS',
    'BEAT AGO',
  ];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const row of [header, ...rows]) {
    out.write(
      row
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join('  ')
        .trimEnd() + '\n',
    );
  }
}
