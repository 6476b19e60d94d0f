/**
 * The frame both long runs' `main` share: read the flags (exit 2 naming the wrong one, 0 after
 * `--help`), make the report directory, stop every process the run started on Ctrl-C, SIGTERM or
 * past its time budget, and exit with the run's own code (1 when it threw).
 */
import { makeNamedDirectory } from '../../nodes/common/index.js';

/** What a long run's flags read to. */
export type ReadArgs<O> = { type: 'help'; text: string } | { type: 'run'; options: O };

/** What a run's body is given. */
export interface RunContext {
  /** A timestamp for the run's report and log files. */
  readonly stamp: string;
  /** Prints a line of progress, prefixed with nothing. */
  readonly say: (text: string) => void;
  /** Hands over how to stop what the run started, as soon as it started it. */
  readonly started: (stop: () => Promise<void>) => void;
}

/** One long run. */
export interface LongRun<O extends { reportDir: string }> {
  /** `chaos` or `soak`: the prefix of its messages. */
  name: string;
  /** The flags' one-line usage. */
  usage: string;
  /** @throws ConfigError naming the flag that is wrong. */
  readArgs(argv: readonly string[]): ReadArgs<O>;
  /** How long the run may take in all before it gives up, ms. */
  budgetMs(options: O): number;
  /** The run; resolves with the exit code (0 passed, 1 failed). */
  run(options: O, context: RunContext): Promise<number>;
}

const say = (text: string): void => void process.stdout.write(text + '\n');

/** Runs `spec` as this process's `main` and exits with its code. */
export function runLongRun<O extends { reportDir: string }>(spec: LongRun<O>): void {
  main(spec).then(
    (code) => process.exit(code),
    (err: unknown) => {
      say(`${spec.name}: ${(err as Error).stack ?? String(err)}`);
      process.exit(1);
    },
  );
}

async function main<O extends { reportDir: string }>(spec: LongRun<O>): Promise<number> {
  let options: O;
  try {
    const read = spec.readArgs(process.argv.slice(2));
    if (read.type === 'help') {
      process.stdout.write(read.text);
      return 0;
    }
    options = read.options;
    makeNamedDirectory('--report', options.reportDir);
  } catch (err) {
    say(`${spec.name}: ${(err as Error).message}\nusage: ${spec.usage} (--help lists the flags)`);
    return 2;
  }
  let stop: (() => Promise<void>) | undefined;
  const stopAndExit = (why: string, code: number) => {
    say(`${spec.name}: ${why}; stopping every process it started`);
    void (stop?.() ?? Promise.resolve()).finally(() => process.exit(code));
  };
  process.once('SIGINT', () => stopAndExit('interrupted', 130));
  process.once('SIGTERM', () => stopAndExit('terminated', 143));
  setTimeout(() => stopAndExit('over its time budget', 1), spec.budgetMs(options)).unref();
  const context: RunContext = {
    stamp: new Date().toISOString().replace(/[:.]/g, '-'),
    say,
    started: (stopRun) => (stop = stopRun),
  };
  try {
    return await spec.run(options, context);
  } catch (err) {
    await stop?.();
    throw err;
  }
}
