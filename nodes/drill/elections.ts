/**
 * The server's share of a lost NATS node, timed from the server itself: which Raft groups the
 * node led (streams, their consumers, the JetStream meta group), and when each got a new leader,
 * from the leader-elected advisories nats-server publishes. Polling stream info for the leader
 * is late by the poll and by requests that wait on the dead node; an advisory is sent by the new
 * leader the moment it takes over, so `kill-nats-node` can say how much of the client's window
 * was the election and how much was Vigil's.
 */
import type { JetStreamManager } from '@nats-io/jetstream';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';

/** Where nats-server announces a new stream or consumer leader (`<stream>[.<consumer>]` follow). */
const STREAM_ELECTED = '$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.>';
const CONSUMER_ELECTED = '$JS.EVENT.ADVISORY.CONSUMER.LEADER_ELECTED.>';

/**
 * The streams and consumers `server` leads, named `<stream>` and `<stream>/<consumer>`. Every
 * stream is listed (the request stream, the buckets' streams, the dead letters), with the
 * consumers of those it leads or not: a consumer's leader need not be its stream's.
 */
export async function groupsLedBy(jsm: JetStreamManager, server: string): Promise<string[]> {
  const led: string[] = [];
  for await (const stream of jsm.streams.list()) {
    const name = stream.config.name;
    if (stream.cluster?.leader === server) led.push(name);
    // Ephemeral consumers (KV watches, R1) move with their stream; only durables have elections.
    for await (const consumer of jsm.consumers.list(name)) {
      if (consumer.config.durable_name && consumer.cluster?.leader === server)
        led.push(`${name}/${consumer.name}`);
    }
  }
  return led;
}

/** A running watch for new leaders. */
export interface ElectionWatch {
  /** ms from `since` to the first leader-elected advisory of each group, so far. */
  readonly elected: Readonly<Record<string, number>>;
  /**
   * The server each group's first advisory named. It may be the killed server itself: restarted
   * before its old peers agreed (elections take 4-9 s), it can win again with the longest log.
   */
  readonly leaders: Readonly<Record<string, string>>;
  /** Resolves once each of `groups` has a new leader, or after `timeoutMs`. */
  until(groups: readonly string[], timeoutMs: number): Promise<void>;
  stop(): void;
}

/**
 * Watches leader-elected advisories on `nc` (connect it to servers that survive the fault, or a
 * reconnect may drop the advisory), timing each from `since()` (read when the first arrives).
 */
export function watchElections(nc: NatsConnection, since: () => number): ElectionWatch {
  const elected: Record<string, number> = {};
  const leaders: Record<string, string> = {};
  let wake: (() => void) | undefined;
  const record = (group: string, msg: Msg) => {
    const at = Date.now() - since();
    if (at >= 0 && elected[group] === undefined) {
      elected[group] = at;
      const leader = leaderNamed(msg);
      if (leader) leaders[group] = leader;
    }
    wake?.();
  };
  const prefix = (pattern: string) => pattern.slice(0, -1);
  const subs: Subscription[] = [
    nc.subscribe(STREAM_ELECTED, {
      callback: (_, msg) => record(msg.subject.slice(prefix(STREAM_ELECTED).length), msg),
    }),
    nc.subscribe(CONSUMER_ELECTED, {
      callback: (_, msg) =>
        record(msg.subject.slice(prefix(CONSUMER_ELECTED).length).replace('.', '/'), msg),
    }),
  ];
  return {
    elected,
    leaders,
    async until(groups, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline && groups.some((g) => elected[g] === undefined)) {
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, Math.min(250, deadline - Date.now()));
        });
      }
    },
    stop() {
      for (const sub of subs) sub.unsubscribe();
    },
  };
}

/** The `leader` an advisory names (nats-server's JSON), if it reads as one. */
function leaderNamed(msg: Msg): string | undefined {
  try {
    const leader = msg.json<{ leader?: unknown }>().leader;
    return typeof leader === 'string' && leader !== '' ? leader : undefined;
  } catch {
    return undefined;
  }
}
