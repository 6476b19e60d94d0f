/**
 * The killer: SIGKILLs a model executor (a child process, found by its pid in the heartbeats)
 * or a whole actor host, and times the recovery in the background: an executor is back when a
 * heartbeat of the same actor shows a new pid running (its host's supervisor restarted it); a host
 * is back when the run has started it again and it is ready, and then when every one of its
 * models beats as running.
 */
import { ActorState } from '../../protocol/index.js';
import { isFresh, type HeartbeatWatch, type SeenBeat } from './heartbeats.js';
import type { ChaosTopology, HostSlot } from './topology.js';

/** How long a recovery is awaited before it counts as not seen, ms. */
const RECOVERY_TIMEOUT_MS = 60_000;

/** One kill and what came back. */
export interface KillRecord {
  kind: 'executor' | 'host';
  /** The actor (`host/model`) or the host slot. */
  target: string;
  pid: number;
  killedAt: number;
  /** Executor: a new pid running; host: the new process ready. ms after the kill. */
  restartMs?: number;
  /** Host: every model of the new process beating as running, ms after the kill. */
  actorsMs?: number;
  newPid?: number;
}

/** Picks targets, kills them, and follows their recovery. */
export class Killer {
  readonly kills: KillRecord[] = [];
  readonly #recoveries = new Set<Promise<void>>();
  /** Executors killed and not yet seen back: never picked twice. */
  readonly #down = new Set<string>();
  #hostDown = false;

  constructor(
    private readonly topology: ChaosTopology,
    private readonly beats: HeartbeatWatch,
    private readonly models: readonly string[],
    private readonly hostShare: number,
  ) {}

  /** Kills one target (a host with probability `hostShare`); false when none could be killed. */
  killOne(): boolean {
    const wantHost = Math.random() < this.hostShare;
    return wantHost
      ? this.#killHost() || this.#killExecutor()
      : this.#killExecutor() || this.#killHost();
  }

  /** Resolves once every recovery under way was seen (or timed out). */
  async recovered(): Promise<void> {
    while (this.#recoveries.size > 0) await Promise.all([...this.#recoveries]);
  }

  #track(recovery: Promise<void>): void {
    const p = recovery.finally(() => this.#recoveries.delete(p));
    this.#recoveries.add(p);
  }

  /** A running executor of a live host, not killed already. */
  #pickExecutor(): SeenBeat | undefined {
    const hosts = new Map(
      this.topology.hosts.flatMap((h) =>
        h.current && h.hostId ? [[h.hostId, h.current.pid]] : [],
      ),
    );
    const live = this.beats
      .latest()
      .filter(
        ({ beat }) =>
          beat.state === ActorState.Running &&
          beat.isolation === 'child-process' &&
          beat.pid > 0 &&
          hosts.has(beat.host) &&
          hosts.get(beat.host) !== beat.pid &&
          !this.#down.has(beat.actorId) &&
          isFresh(beat),
      );
    return live[Math.floor(Math.random() * live.length)];
  }

  #killExecutor(): boolean {
    const target = this.#pickExecutor();
    if (!target) return false;
    const { actorId, pid } = target.beat;
    const killedAt = Date.now();
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      return false; // gone already (its host was killed a moment ago)
    }
    const record: KillRecord = { kind: 'executor', target: actorId, pid, killedAt };
    this.kills.push(record);
    this.#down.add(actorId);
    this.#track(
      this.beats
        .waitFor(
          ({ beat }) =>
            beat.actorId === actorId &&
            beat.pid > 0 &&
            beat.pid !== pid &&
            beat.state === ActorState.Running,
          RECOVERY_TIMEOUT_MS,
        )
        .then((back) => {
          if (back) {
            record.restartMs = back.seenAt - killedAt;
            record.newPid = back.beat.pid;
          }
          this.#down.delete(actorId);
        }),
    );
    return true;
  }

  /** Kills a host only while every host is up: the run never takes them all down at once. */
  #killHost(): boolean {
    if (this.#hostDown) return false;
    const hosts = this.topology.hosts.filter((h) => h.current !== undefined);
    if (hosts.length < this.topology.hosts.length) return false;
    const slot = hosts[Math.floor(Math.random() * hosts.length)]!;
    const victim = slot.current!;
    const killedAt = Date.now();
    victim.signal('SIGKILL');
    const record: KillRecord = { kind: 'host', target: slot.label, pid: victim.pid, killedAt };
    this.kills.push(record);
    this.#hostDown = true;
    slot.current = undefined;
    this.#track(this.#restart(slot, victim.exited, record).finally(() => (this.#hostDown = false)));
    return true;
  }

  async #restart(slot: HostSlot, exited: Promise<unknown>, record: KillRecord): Promise<void> {
    await exited;
    let next;
    for (let attempt = 1; !next; attempt++) {
      try {
        next = await this.topology.restartHost(slot);
      } catch (err) {
        if (attempt >= 5) throw err;
      }
    }
    record.restartMs = Date.now() - record.killedAt;
    record.newPid = next.pid;
    const hostId = slot.hostId;
    // When each model of the new process was first seen running.
    const firstRunning = new Map<string, number>();
    const allUp = await this.beats.waitFor(({ beat, seenAt }) => {
      if (
        beat.host === hostId &&
        beat.state === ActorState.Running &&
        !firstRunning.has(beat.actorId)
      )
        firstRunning.set(beat.actorId, seenAt);
      return firstRunning.size >= this.models.length;
    }, RECOVERY_TIMEOUT_MS);
    if (allUp) record.actorsMs = Math.max(...firstRunning.values()) - record.killedAt;
  }
}
