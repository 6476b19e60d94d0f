/**
 * How many generated cases a run makes and from which seed. The suites under `npm test` run
 * {@link CI_RUNS} per boundary from a fixed seed, so CI is reproducible; `FUZZ_SEED` changes the
 * seed and `FUZZ_RUNS` the count (the `npm run fuzz` command defaults to {@link FUZZ_RUNS_DEFAULT}).
 * A failing property prints the seed and the shrunk input, and replays with the same seed.
 */

/** Generated cases per boundary in CI. */
export const CI_RUNS = 1000;

/** Generated cases per boundary in `npm run fuzz`. */
export const FUZZ_RUNS_DEFAULT = 10_000;

/** The seed CI uses unless `FUZZ_SEED` says otherwise. */
export const CI_SEED = 20_261_207;

function positiveInt(name: string, raw: string | undefined): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (!/^-?\d{1,10}$/.test(raw)) throw new Error(`${name}=${raw} must be an integer`);
  return Number(raw);
}

/** The seed of this run: `FUZZ_SEED`, else `fallback`. */
export function fuzzSeed(fallback: number = CI_SEED): number {
  return positiveInt('FUZZ_SEED', process.env['FUZZ_SEED']) ?? fallback;
}

/** Generated cases per boundary: `FUZZ_RUNS`, else `fallback`. */
export function fuzzRuns(fallback: number = CI_RUNS): number {
  const runs = positiveInt('FUZZ_RUNS', process.env['FUZZ_RUNS']) ?? fallback;
  if (runs < 1) throw new Error(`FUZZ_RUNS=${runs} must be at least 1`);
  return runs;
}
