/**
 * Loaded with `--import` (through `NODE_OPTIONS`, which refuses `--cpu-prof` itself) into a process
 * the bench starts, when `BENCH_CPU_PROF=1`: records a V8 CPU profile from start-up to exit and
 * writes it to `$BENCH_CPU_PROF_FILE`. Summarise it with `bench/cpu-profile-top.ts`.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';

const file = process.env['BENCH_CPU_PROF_FILE'];
if (file) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.start');
  // An in-process inspector session answers synchronously, so this completes inside 'exit'.
  process.once('exit', () => {
    session.post('Profiler.stop', (err, result) => {
      if (!err) writeFileSync(file, JSON.stringify(result.profile));
    });
  });
}
