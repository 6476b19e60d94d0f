/**
 * What the processes under test cost while a cell runs, read from `/proc`:
 *
 * - peak resident memory (`VmRSS` in `/proc/<pid>/status`), sampled every 500 ms: a single reading
 *   at the end of a cell can land just after a garbage collection, and a capacity plan needs the
 *   peak;
 * - CPU time (`utime + stime` in `/proc/<pid>/stat`) over the measured window, as a percentage of
 *   one core, plus the CPU the rest of the machine used meanwhile. On a small machine that last
 *   figure says whether the cell was measured alone.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Default time between two memory samples, ms. */
export const RSS_SAMPLE_INTERVAL_MS = 500;

/** What a sampler found, per process name; `null` where `/proc` could not be read. */
export interface ProcessUsage {
  /** Peak RSS over the whole cell, MiB. */
  rssMiB: Record<string, number | null>;
  /** CPU over the measured window, % of one core; `other` is every other process on the machine. */
  cpuPercent: Record<string, number | null>;
}

/** A running sampler. */
export interface ProcessSampler {
  /** Starts the CPU window (the measured part of the cell begins now). */
  markMeasureStart(): void;
  /** Ends the CPU window (default: at `stop()`). */
  markMeasureEnd(): void;
  /**
   * Takes a last sample and returns what was found. `known` gives CPU percentages for processes
   * that measured themselves (one that has exited can no longer be read from /proc).
   */
  stop(known?: Readonly<Record<string, number>>): ProcessUsage;
}

const CLOCK_TICKS_PER_S = clockTicks();

function clockTicks(): number {
  try {
    const ticks = Number(
      execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5_000 }).trim(),
    );
    return ticks > 0 ? ticks : 100;
  } catch {
    return 100; // the Linux default
  }
}

/** Current RSS of `pid` in KiB, or `undefined` when the process is gone or /proc is missing. */
export function readRssKiB(pid: number): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
    return match?.[1] === undefined ? undefined : Number(match[1]);
  } catch {
    return undefined;
  }
}

/** CPU time `pid` has used (all threads, user + system), in clock ticks. */
function readCpuTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 of stat(5) are utime and stime; fields[0] here is field 3.
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return Number.isFinite(utime) && Number.isFinite(stime) ? utime + stime : undefined;
  } catch {
    return undefined;
  }
}

/** Ticks all CPUs spent in user and system mode (`/proc/stat`), whoever ran. */
function readMachineBusyTicks(): number | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
    const [, user, nice, system] = line.trim().split(/\s+/).map(Number);
    if (user === undefined || nice === undefined || system === undefined) return undefined;
    return user + nice + system;
  } catch {
    return undefined;
  }
}

/** Samples the named processes until `stop()`. */
export function startProcessSampler(
  pids: Readonly<Record<string, number>>,
  intervalMs = RSS_SAMPLE_INTERVAL_MS,
): ProcessSampler {
  const peaks = new Map<string, number>();
  const sampleRss = (): void => {
    for (const [name, pid] of Object.entries(pids)) {
      const kib = readRssKiB(pid);
      if (kib !== undefined && kib > (peaks.get(name) ?? 0)) peaks.set(name, kib);
    }
  };
  const readTicks = (): Map<string, number | undefined> => {
    const ticks = new Map<string, number | undefined>();
    for (const [name, pid] of Object.entries(pids)) ticks.set(name, readCpuTicks(pid));
    ticks.set('\0machine', readMachineBusyTicks());
    return ticks;
  };

  type Snapshot = { at: bigint; ticks: Map<string, number | undefined> };
  const snapshot = (): Snapshot => ({ at: process.hrtime.bigint(), ticks: readTicks() });
  let from: Snapshot | undefined;
  let to: Snapshot | undefined;
  sampleRss();
  const timer = setInterval(sampleRss, intervalMs);
  return {
    markMeasureStart() {
      from = snapshot();
    },
    markMeasureEnd() {
      if (from) to ??= snapshot();
    },
    stop(known = {}) {
      clearInterval(timer);
      sampleRss();
      const rssMiB: Record<string, number | null> = {};
      for (const name of Object.keys(pids)) {
        const kib = peaks.get(name);
        rssMiB[name] = kib === undefined ? null : Math.round((kib / 1024) * 10) / 10;
      }
      const cpuPercent: Record<string, number | null> = {};
      if (from) {
        const start = from;
        const end = to ?? snapshot();
        const seconds = Number(end.at - start.at) / 1e9;
        const percentOf = (name: string): number | null => {
          const before = start.ticks.get(name);
          const after = end.ticks.get(name);
          if (before === undefined || after === undefined || seconds <= 0) return null;
          return ((after - before) / CLOCK_TICKS_PER_S / seconds) * 100;
        };
        let ours = 0;
        for (const name of Object.keys(pids)) {
          const percent = percentOf(name) ?? known[name] ?? null;
          cpuPercent[name] = percent === null ? null : Math.round(percent);
          ours += percent ?? 0;
        }
        const machine = percentOf('\0machine');
        cpuPercent['other'] = machine === null ? null : Math.max(0, Math.round(machine - ours));
      }
      return { rssMiB, cpuPercent };
    },
  };
}
