/** Describes the machine a bench ran on, so that figures are never quoted without it. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism, release, totalmem, type } from 'node:os';

/** The machine and the software versions behind a set of figures. */
export interface MachineInfo {
  cpuModel: string;
  /** Logical CPUs this process may use. */
  cores: number;
  memoryGiB: number;
  os: string;
  node: string;
  natsServer: string;
}

function cpuModel(): string {
  try {
    const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
    return /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

function natsServerVersion(binPath: string): string {
  try {
    return execFileSync(binPath, ['--version'], { encoding: 'utf8', timeout: 10_000 }).trim();
  } catch (err) {
    return `unknown (${(err as Error).message.split('\n')[0] ?? ''})`;
  }
}

/** Reads the machine's description; `natsServerBin` is the binary the bench runs. */
export function describeMachine(natsServerBin: string): MachineInfo {
  return {
    cpuModel: cpuModel(),
    cores: availableParallelism(),
    memoryGiB: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
    os: `${type()} ${release()}`,
    node: process.version,
    natsServer: natsServerVersion(natsServerBin),
  };
}
