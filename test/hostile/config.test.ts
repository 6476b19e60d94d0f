/**
 * The configuration boundary under hostile values: every declared setting of every program, and
 * the JSON settings and files (tenant limits, breaker, restart, echo faults, model isolation, API
 * keys file, alert rules) with one field wrong at a time. A value must be refused with a
 * ConfigError naming the variable (and the field), or be one the program can use; a node given a
 * bad value exits 1 with one JSON line naming it, no stack trace, before it connects anywhere.
 *
 * Cases marked `[known: ...]` fail until the defect they name is fixed.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import fc from 'fast-check';
import { ConfigError } from '../../nodes/common/index.js';
import { PROJECT_ROOT } from '../../nodes/launcher/index.js';
import {
  absurdNumbers,
  allSettings,
  docCases,
  docRaw,
  judgeSetting,
  settingCases,
  unusable,
  VALID_DOCS,
} from './lib/config-cases.js';
import { fuzzRuns, fuzzSeed } from './lib/runs.js';
import { Tally } from './lib/tally.js';

interface ValueCase {
  variable: string;
  value: string;
  /** `error`; `ok`; `error-or-default` (blank may mean unset); `error-or-ok`. */
  expect: string;
  known?: string;
}
interface ProgramCase {
  program: string;
  env: Record<string, string>;
  variable: string;
  known?: string;
}
const corpus = JSON.parse(
  readFileSync(new URL('./corpus/config.json', import.meta.url), 'utf8'),
) as { values: ValueCase[]; programs: ProgramCase[] };

const settings = new Map(allSettings().map((s) => [s.name, s]));
const scratch = mkdtempSync(join(tmpdir(), 'vigil-hostile-config-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

describe('configuration corpus', () => {
  for (const c of corpus.values) {
    const title = `${c.variable}=${JSON.stringify(c.value)}: ${c.expect}`;
    test(c.known ? `${title} [known: ${c.known}]` : title, () => {
      const setting = settings.get(c.variable);
      assert.ok(setting, `${c.variable} is declared`);
      let value: unknown;
      try {
        value = setting.parse(c.value);
      } catch (err) {
        assert.ok(
          err instanceof ConfigError,
          `threw ${(err as Error).name}: ${(err as Error).message}`,
        );
        assert.ok(err.message.includes(c.variable), `names ${c.variable}: ${err.message}`);
        assert.notEqual(c.expect, 'ok', `refused a good value: ${err.message}`);
        return;
      }
      const isDefault = c.expect === 'error-or-default' && setting.parse(undefined) === value;
      assert.ok(
        c.expect === 'ok' || c.expect === 'error-or-ok' || isDefault,
        `accepted as ${JSON.stringify(value)}; expected ${c.expect}`,
      );
      const why = unusable(setting, c.value, value);
      if (c.expect === 'ok') assert.equal(why, undefined);
    });
  }
});

describe('configuration generated', () => {
  test('every setting, values wrong in type and range: a ConfigError naming it, or usable', (t) => {
    const seed = fuzzSeed();
    const runs = fuzzRuns();
    const tally = new Tally();
    for (const c of fc.sample(settingCases(), { seed, numRuns: runs })) {
      const { outcome, problem } = judgeSetting(settings.get(c.name)!, c.raw);
      const input = `${c.name}=${JSON.stringify(c.raw)}`;
      if (problem) tally.violate('config: settings', `${outcome}`, `${c.name}: ${problem}`, input);
      else tally.count('config: settings', outcome, input);
    }
    t.diagnostic(`seed ${seed}, ${runs} cases\n${tally.table()}`);
    assert.equal(
      tally.violations.length,
      0,
      `${tally.violations.length} violations (FUZZ_SEED=${seed})\n${tally.reportByOutcome()}`,
    );
  });

  test('JSON settings and files, one field wrong: a ConfigError naming it and the field', (t) => {
    const seed = fuzzSeed();
    const runs = fuzzRuns();
    const tally = new Tally();
    const boundary = 'config: documents';
    for (const c of fc.sample(docCases(), { seed, numRuns: runs })) {
      const setting = settings.get(c.name)!;
      const input = `${c.name} ${c.path} ${c.change}: ${c.text}`;
      let value: unknown;
      try {
        value = setting.parse(docRaw(c));
      } catch (err) {
        if (!(err instanceof ConfigError)) {
          tally.violate(
            boundary,
            'crashed',
            `${(err as Error).name}: ${(err as Error).message}`,
            input,
          );
          continue;
        }
        // The field, or the list entry that holds it (a union's error names only the entry).
        const segments = c.path.split('.');
        const field = segments.at(-1) ?? '';
        const entry = segments.slice(0, -1).join('.');
        const named =
          err.message.includes(c.name) &&
          (c.path === '' ||
            c.change.startsWith('add') ||
            err.message.includes(field) ||
            (/\.\d+$/.test(entry) && err.message.includes(`${entry}:`)));
        if (!named) tally.violate(boundary, 'refused without naming the field', err.message, input);
        else tally.count(boundary, 'ConfigError naming variable and field', input);
        continue;
      }
      const absurd = absurdNumbers(value);
      if (absurd.length > 0)
        tally.violate(boundary, 'accepted an absurd number', absurd.join(', '), input);
      else tally.count(boundary, 'accepted (the change was valid)', input);
    }
    t.diagnostic(`seed ${seed}, ${runs} cases\n${tally.table()}`);
    assert.equal(
      tally.violations.length,
      0,
      `${tally.violations.length} violations (FUZZ_SEED=${seed})\n${tally.reportByOutcome()}`,
    );
  });
});

/** How long a node given a bad value may take to stop; one still running has accepted it. */
const START_PATIENCE_MS = 15_000;

/** Runs a node with `env` (and nothing of this process's VIGIL/NATS/OTEL variables). */
function runNode(program: string, env: Record<string, string>): Promise<ChildRun> {
  const childEnv: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env))
    if (!/^(VIGIL|NATS|OTEL)_/.test(name)) childEnv[name] = value;
  Object.assign(childEnv, env);
  return runChild([join('nodes', program, 'main.ts')], childEnv);
}

/** How a program run through tsx ended; `killed` if it was still running after the patience. */
interface ChildRun {
  code: number | null;
  stdout: string;
  stderr: string;
  killed: boolean;
}

/** Runs `args` through tsx from the project's root. */
function runChild(args: string[], env: NodeJS.ProcessEnv): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', ...args], {
      cwd: PROJECT_ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, START_PATIENCE_MS);
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, killed });
    });
  });
}

describe('configuration end to end', { concurrency: 4 }, () => {
  for (const c of corpus.programs) {
    const title = `${c.program} with ${JSON.stringify(c.env)} exits 1 naming ${c.variable}`;
    test(c.known ? `${title} [known: ${c.known}]` : title, async () => {
      const env: Record<string, string> = {
        // Nothing listens here: a node that took the bad value cannot get anywhere.
        NATS_URL: 'nats://127.0.0.1:1',
        VIGIL_REGION: 'test',
        VIGIL_API_KEYS: 'alpha:aaaaaaaaaaaaaaaaaaaa',
        VIGIL_LOG_LEVEL: 'warn',
      };
      for (const [name, value] of Object.entries(c.env)) {
        const rule = /^\{\{rules:(\w+)=(.*)\}\}$/.exec(value);
        if (!rule) {
          env[name] = value;
          continue;
        }
        const rules = structuredClone(VALID_DOCS['VIGIL_ALERT_RULES']) as {
          rules: Record<string, unknown>[];
        };
        rules.rules[0]![rule[1]!] = JSON.parse(rule[2]!);
        const file = join(scratch, `${c.program}-rules.json`);
        writeFileSync(file, JSON.stringify(rules));
        env[name] = file;
      }
      const run = await runNode(c.program, env);
      assert.ok(
        !run.killed,
        `still running after ${START_PATIENCE_MS} ms: the bad value was taken\n${run.stdout.slice(0, 500)}`,
      );
      assert.equal(run.code, 1, run.stdout + run.stderr);
      assert.equal(run.stderr, '', 'nothing on stderr');
      const lines = run.stdout.trim().split('\n');
      assert.equal(lines.length, 1, `one line, not:\n${run.stdout.slice(0, 1000)}`);
      const line = JSON.parse(lines[0]!) as { level?: string; msg?: string; variables?: string[] };
      assert.ok(!lines[0]!.includes('    at '), `no stack trace: ${lines[0]!.slice(0, 300)}`);
      assert.match(String(line.msg), /^invalid configuration: /, lines[0]);
      assert.ok(line.variables?.includes(c.variable), `names ${c.variable}: ${lines[0]}`);
    });
  }
});

/** A command line, the exit code it must end with, and what its one-line complaint must say. */
interface CommandCase {
  args: string[];
  code: number;
  says: RegExp;
}

describe('command lines', { concurrency: 4 }, () => {
  const file = join(scratch, 'a-file');
  writeFileSync(file, 'not a directory');
  // Never the project's own credentials, should a bad value be taken.
  const generateInScratch = ['nodes/cli/main.ts', 'creds', 'generate', '--out', join(scratch, 'c')];
  const cases: CommandCase[] = [
    // Node's recursive mkdir spins for ever under /proc: the programs must fail instead.
    {
      args: ['nodes/cli/main.ts', 'creds', 'generate', '--out', '/proc/vigil-hostile/creds'],
      code: 1,
      says: /^vigil: the credentials directory \/proc\/vigil-hostile\/creds cannot be made: ENOENT/,
    },
    {
      args: ['nodes/cli/main.ts', 'creds', 'generate', '--out', file],
      code: 1,
      says: /^vigil: the credentials directory .* cannot be made: EEXIST/,
    },
    {
      args: ['nodes/cli/main.ts', 'creds', 'generate', '--out', join(file, 'creds')],
      code: 1,
      says: /^vigil: the credentials directory .* cannot be made: ENOTDIR/,
    },
    ...['', 'a,,b', 'Site', 'a b', 's'.repeat(65), 'a.b', '>', 'eu,*'].map((sites) => ({
      args: [...generateInScratch, '--edge-sites', sites],
      code: 2,
      says: /^vigil: --edge-sites: '.*' is not an edge site name/,
    })),
    ...['', 'EU', 'eu,', 'eu.us'].map((regions) => ({
      args: [...generateInScratch, '--regions', regions],
      code: 2,
      says: /^vigil: --regions: '.*' is not a region name/,
    })),
    {
      args: [...generateInScratch, '--seeds', 'x'],
      code: 2,
      says: /^vigil: Unknown option '--seeds'/,
    },
    ...['nodes/drill/main.ts kill-actor', 'long-runs/soak/main.ts', 'long-runs/chaos/main.ts'].map(
      (program) => ({
        args: [...program.split(' '), '--report', '/proc/vigil-hostile/reports'],
        code: 2,
        says: /^\w+: --report \/proc\/vigil-hostile\/reports cannot be made: ENOENT/,
      }),
    ),
    // A saved soak run to judge again: missing, not JSON, JSON of another shape.
    {
      args: ['long-runs/soak/main.ts', '--judge', join(scratch, 'no-such-run.json')],
      code: 2,
      says: /^soak: --judge .*no-such-run\.json cannot be read: ENOENT/,
    },
    {
      args: ['long-runs/soak/main.ts', '--judge', file],
      code: 2,
      says: /^soak: --judge .* cannot be read: .*JSON/,
    },
    ...['{}', 'null', '[]', '{"facts":{"durationMs":1},"samples":[1]}'].map((json, i) => {
      const saved = join(scratch, `not-a-run-${i}.json`);
      writeFileSync(saved, json);
      return {
        args: ['long-runs/soak/main.ts', '--judge', saved],
        code: 2,
        says: /^soak: --judge .* is not a saved soak run/,
      };
    }),
  ];
  for (const c of cases) {
    test(`${c.args.join(' ')} exits ${c.code} saying so`, async () => {
      const run = await runChild(c.args, process.env);
      const output = run.stderr + run.stdout;
      assert.ok(!run.killed, `still running after ${START_PATIENCE_MS} ms`);
      assert.equal(run.code, c.code, output);
      assert.match(output, c.says);
      assert.ok(!output.includes('    at '), `no stack trace:\n${output.slice(0, 600)}`);
    });
  }
});
