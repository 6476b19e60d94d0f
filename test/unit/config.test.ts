/**
 * The declared configuration (`nodes/common/env.ts`): each kind of setting parses what it allows
 * and refuses the rest with a ConfigError naming the variable, the value and what is allowed;
 * secrets never appear in a message; a program's configuration reports every bad value at once,
 * then its rules. And each program's real declaration keeps its defaults and rules.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { z } from 'zod';
import { ACTOR_HOST_CONFIG } from '../../nodes/actor-host/index.js';
import {
  renderHelp,
  ConfigError,
  custom,
  decimal,
  durationMs,
  file,
  flag,
  humanDuration,
  int,
  json,
  list,
  name,
  names,
  nodeConfig,
  oneOf,
  parseConfig,
  parseSettings,
  REDACTED,
  settingsGroup,
  text,
  url,
  type Setting,
  LOG_SETTINGS,
  readNodeConfig,
  silentLogger,
} from '../../nodes/common/index.js';
import { CONTROLLER_CONFIG } from '../../nodes/controller/index.js';
import { GATEWAY_CONFIG, gatewayOptionsFromEnv } from '../../nodes/gateway/index.js';
import { readLauncherConfig } from '../../nodes/launcher/index.js';
import { PROGRAMS } from '../../scripts/config-page.js';

const dir = mkdtempSync(join(tmpdir(), 'vigil-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** The ConfigError `parse` throws, failing when it parses. */
function problem(parse: () => unknown): ConfigError {
  try {
    parse();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `a ConfigError, not ${String(err)}`);
    return err;
  }
  assert.fail('parsed, but should not have');
}

/** Parses each good value to what is expected, and refuses each bad one with `message`. */
function check<T>(
  setting: Setting<T>,
  good: [string | undefined, T][],
  bad: [string, RegExp][],
): void {
  for (const [raw, expected] of good) {
    assert.deepEqual(setting.parse(raw), expected, `${setting.name}=${String(raw)}`);
  }
  for (const [raw, message] of bad) {
    const err = problem(() => setting.parse(raw));
    assert.match(err.message, message, `${setting.name}=${raw}`);
    assert.deepEqual(err.variables, [setting.name]);
  }
}

describe('kinds of setting', () => {
  test('integers and durations: range, unit, and the default when unset or empty', () => {
    const port = int({ name: 'PORT', min: 0, max: 65_535, default: 8080, meaning: 'm' });
    check(
      port,
      [
        [undefined, 8080],
        ['', 8080],
        ['0', 0],
        ['65535', 65_535],
      ],
      [
        ['abc', /^PORT=abc must be an integer from 0 to 65535$/],
        ['65536', /^PORT=65536 must be an integer from 0 to 65535$/],
        ['1.5', /^PORT=1\.5 must be/],
      ],
    );
    assert.equal(port.type, 'integer, 0 to 65535');
    assert.equal(port.defaultText, '`8080`');
    const wait = durationMs({ name: 'WAIT_MS', min: 1000, meaning: 'm' });
    check(
      wait,
      [
        [undefined, undefined],
        ['1000', 1000],
        ['2147483647', 2 ** 31 - 1],
      ],
      [
        ['999', /^WAIT_MS=999 must be an integer from 1000 to 2147483647 \(ms\)$/],
        // Past 2^31-1 ms a Node timer fires after 1 ms.
        ['2147483648', /^WAIT_MS=2147483648 must be an integer from 1000 to 2147483647 \(ms\)$/],
      ],
    );
    assert.equal(wait.type, 'integer (ms), 1000 to 2147483647');
    check(
      decimal({ name: 'RATIO', min: 0, max: 1, default: 1, meaning: 'm' }),
      [
        [undefined, 1],
        ['0.25', 0.25],
      ],
      [
        ['1.5', /^RATIO=1\.5 must be a number from 0 to 1$/],
        ['half', /must be a number/],
      ],
    );
  });

  test('strings, names, closed sets and switches', () => {
    check(
      text({ name: 'WORD', pattern: /^[a-z]+$/, patternText: 'lowercase letters', meaning: 'm' }),
      [['abc', 'abc']],
      [['ABC', /^WORD=ABC must be lowercase letters$/]],
    );
    check(
      name({ name: 'REGION', default: 'local', meaning: 'm' }),
      [
        [undefined, 'local'],
        ['eu-1', 'eu-1'],
      ],
      [['EU', /^REGION=EU must be a name \(lowercase letters/]],
    );
    check(
      oneOf({ name: 'LEVEL', values: ['debug', 'info'], default: 'info', meaning: 'm' }),
      [
        [undefined, 'info'],
        ['debug', 'debug'],
      ],
      [['loud', /^LEVEL=loud must be one of debug, info$/]],
    );
    check(
      flag({ name: 'HOOKS', default: false, meaning: 'm' }),
      [
        [undefined, false],
        ['1', true],
        ['yes', true],
        ['off', false],
      ],
      [['maybe', /^HOOKS=maybe must be one of 1, true, yes, on, 0, false, no, off$/]],
    );
    check(
      url({ name: 'ENDPOINT', meaning: 'm' }),
      [['http://jaeger:4318', 'http://jaeger:4318']],
      [['jaeger:4318', /^ENDPOINT=jaeger:4318 must be a URL \(http, https\)$/]],
    );
  });

  test('lists: items trimmed, each checked, the bad one named', () => {
    check(
      names({ name: 'REGIONS', default: [], meaning: 'm' }),
      [
        [undefined, []],
        ['  ', []],
        ['eu, us', ['eu', 'us']],
      ],
      [
        ['eu,,us', /^REGIONS=eu,,us must be a comma-separated list of names \('' is not\)$/],
        ['eu,US', /\('US' is not\)$/],
      ],
    );
    check(
      list({
        name: 'DELAYS_MS',
        item: z.string().regex(/^\d+$/).transform(Number),
        items: 'ms',
        meaning: 'm',
      }),
      [['1,20', [1, 20]]],
      [['1,x', /^DELAYS_MS=1,x must be a comma-separated list of ms \('x' is not\)$/]],
    );
  });

  test('files must be readable, and may be read into the value', () => {
    const path = join(dir, 'thing.txt');
    writeFileSync(path, 'hello\n');
    check(
      file({ name: 'THING', meaning: 'm' }),
      [[path, path]],
      [[join(dir, 'nope'), /^THING=.*nope cannot be read: ENOENT/]],
    );
    const read = file({ name: 'THING', meaning: 'm', read: (p: string) => p.length });
    assert.equal(read.parse(path), path.length);
    const failing = file({
      name: 'THING',
      meaning: 'm',
      read: () => {
        throw new Error('not what was expected');
      },
    });
    assert.match(
      problem(() => failing.parse(path)).message,
      /^THING=.*thing\.txt: not what was expected$/,
    );
    const rules = file({ name: 'RULES', defaultRaw: join(dir, 'missing.json'), meaning: 'm' });
    assert.match(
      problem(() => rules.parse(undefined)).message,
      /^RULES=.*missing\.json cannot be read/,
      'a default file is read too',
    );
  });

  test('JSON: not JSON, or a field of the wrong shape, named by its path', () => {
    const breaker = json({
      name: 'BREAKER',
      schema: z.object({ ratio: z.number().max(1).optional() }).strict(),
      example: '{"ratio":0.5}',
      meaning: 'm',
    });
    check(
      breaker,
      [
        [undefined, undefined],
        ['{"ratio":0.5}', { ratio: 0.5 }],
      ],
      [
        ['{"ratio":', /^BREAKER is not valid JSON: /],
        ['{"ratio":2}', /^BREAKER\.ratio: Too big/],
        ['{"ratoi":1}', /^BREAKER: Unrecognized key/],
      ],
    );
    assert.equal(breaker.example, '{"ratio":0.5}');
  });

  test('a required setting that is unset says what it needs', () => {
    const region = name({ name: 'REGION', required: true, meaning: 'm' });
    assert.match(problem(() => region.parse('')).message, /^REGION is not set: it must be a name/);
  });

  test('flags parse with the same kinds, named as the flag', () => {
    const nodes = int({ name: 'NODES', min: 1, max: 5, default: 1, meaning: 'm' });
    const err = problem(() => nodes.parse('7', '--nodes'));
    assert.equal(err.message, '--nodes=7 must be an integer from 1 to 5');
    assert.deepEqual(err.variables, ['--nodes']);
    const duration = humanDuration({
      name: '--duration',
      min: 3000,
      max: 600_000,
      default: 20_000,
      meaning: 'm',
    });
    check(
      duration,
      [
        [undefined, 20_000],
        ['20s', 20_000],
        ['2m', 120_000],
        ['5', 5000],
      ],
      [['1s', /^--duration=1s must be a duration like 20s, 500ms or 2m, from 3 to 600 s$/]],
    );
  });
});

describe('secrets', () => {
  test('a secret value never appears in a message; its type and meaning do', () => {
    const cases: [Setting<unknown>, string][] = [
      [
        text({ name: 'PASSWORD', secret: true, pattern: /^\S+$/, meaning: 'm' }),
        'hunter2 with spaces',
      ],
      [
        list({ name: 'KEYS', secret: true, item: z.string().min(16), items: 'keys', meaning: 'm' }),
        'sixteen-chars-ok-1,hunter2',
      ],
      [url({ name: 'WEBHOOK', secret: true, meaning: 'm' }), 'hunter2://hooks/T0/B0/xyz'],
      [
        custom({
          name: 'PAIRS',
          secret: true,
          type: 't',
          allowed: 'a',
          meaning: 'm',
          parse: (raw: string) => {
            throw new Error(`'${raw}' is not a pair; 'hunter2' is too short`);
          },
        }),
        'acme:hunter2',
      ],
    ];
    for (const [setting, raw] of cases) {
      const { message } = problem(() => setting.parse(raw));
      assert.ok(message.startsWith(`${setting.name}=${REDACTED}`), message);
      assert.ok(!message.includes('hunter2'), message);
    }
  });

  test("the gateway's keys and webhook are secret, and their defaults are not shown", () => {
    const settings = [
      ...PROGRAMS.flatMap((p) => Object.values(p.groups).flatMap((g) => Object.values(g.settings))),
    ];
    const secret = new Set(settings.filter((s) => s.secret).map((s) => s.name));
    for (const variable of [
      'VIGIL_API_KEYS',
      'VIGIL_ADMIN_KEYS',
      'NATS_PASSWORD',
      'NATS_TOKEN',
      'VIGIL_DEMO_KEY',
      'VIGIL_ALERT_WEBHOOK',
    ]) {
      assert.ok(secret.has(variable), `${variable} is secret`);
    }
    const err = problem(() =>
      gatewayOptionsFromEnv({ VIGIL_API_KEYS: 'acme:short-secret' }, silentLogger),
    );
    assert.ok(!err.message.includes('short-secret'), err.message);
    assert.match(err.message, /^VIGIL_API_KEYS\[0\]\.key: /);
  });
});

describe('groups and programs', () => {
  const group = settingsGroup({
    id: 'pair',
    title: 'Pair',
    settings: {
      cert: text({ name: 'CERT', meaning: 'm' }),
      key: text({ name: 'KEY', meaning: 'm' }),
      port: int({ name: 'PORT', min: 1, default: 80, meaning: 'm' }),
    },
    rules: [
      {
        text: 'both or neither',
        variables: ['CERT', 'KEY'],
        check: (v) =>
          (v.cert === undefined) !== (v.key === undefined)
            ? 'set both CERT and KEY, or neither'
            : undefined,
      },
    ],
  });

  test('a group parses into a typed object, and checks its rules once its values parse', () => {
    const values = parseSettings(group, { CERT: 'c', KEY: 'k' });
    assert.deepEqual(values, { cert: 'c', key: 'k', port: 80 });
    const rule = problem(() => parseSettings(group, { CERT: 'c' }));
    assert.equal(rule.message, 'set both CERT and KEY, or neither');
    assert.deepEqual(rule.variables, ['CERT', 'KEY']);
    const value = problem(() => parseSettings(group, { CERT: 'c', PORT: '0' }));
    assert.equal(
      value.message,
      'PORT=0 must be an integer of at least 1',
      'values first, rules after',
    );
  });

  test('a program reports every bad value at once, naming each', () => {
    const program = nodeConfig({
      node: 'probe',
      title: 'Probe',
      usage: 'probe',
      summary: 's',
      groups: { pair: group, log: LOG_SETTINGS },
    });
    const err = problem(() => parseConfig(program, { PORT: 'x', VIGIL_LOG_LEVEL: 'loud' }));
    assert.deepEqual(err.variables, ['PORT', 'VIGIL_LOG_LEVEL']);
    assert.match(
      err.message,
      /^PORT=x must be .*; VIGIL_LOG_LEVEL=loud must be one of debug, info, warn, error, silent$/,
    );
    const ok = parseConfig(program, {});
    assert.equal(ok.log.level, 'info');
    assert.equal(ok.pair.port, 80);
  });

  test('start-up: --help, an unknown argument, a bad value', () => {
    const help = readNodeConfig(GATEWAY_CONFIG, ['--help'], {});
    assert.equal(help.type, 'help');
    const extra = readNodeConfig(GATEWAY_CONFIG, ['--port', '1'], {});
    assert.ok(extra.type === 'invalid' && extra.exitCode === 2, JSON.stringify(extra));
    const bad = readNodeConfig(GATEWAY_CONFIG, [], {
      VIGIL_API_KEYS: 'acme:0123456789abcdef',
      VIGIL_GATEWAY_PORT: 'abc',
    });
    assert.ok(bad.type === 'invalid' && bad.exitCode === 1, JSON.stringify(bad));
    assert.deepEqual(bad.variables, ['VIGIL_GATEWAY_PORT']);
    assert.equal(
      bad.message,
      'invalid configuration: VIGIL_GATEWAY_PORT=abc must be an integer from 0 to 65535',
    );
  });
});

describe("the programs' declarations", () => {
  test('every variable is declared once per program, and every program prints them in --help', () => {
    for (const program of PROGRAMS) {
      const variables = Object.values(program.groups).flatMap((g) =>
        Object.values(g.settings).map((s) => s.name),
      );
      assert.equal(
        new Set(variables).size,
        variables.length,
        `${program.node}: a variable declared twice`,
      );
      const help = renderHelp(program);
      for (const variable of variables)
        assert.ok(help.includes(`\n  ${variable}\n`), `${program.node} --help lists ${variable}`);
      for (const f of program.flags)
        assert.ok(help.includes(`\n  ${f.name}`), `${program.node} --help lists ${f.name}`);
    }
  });

  test('the defaults the nodes had before the declarations', () => {
    const gateway = parseConfig(GATEWAY_CONFIG, { VIGIL_API_KEYS: 'acme:0123456789abcdef' });
    assert.equal(gateway.gateway.region, 'local');
    assert.equal(gateway.gateway.port, 8080);
    assert.equal(gateway.gateway.maxBodyBytes, 1024 * 1024);
    assert.equal(gateway.gateway.quotaMaxLease, 100);
    assert.equal(gateway.gateway.quotaOutageTasks, 20);
    assert.equal(gateway.gateway.spillQueueDepth, 1000);
    assert.equal(gateway.nats.servers.join(','), 'nats://127.0.0.1:4222');
    assert.equal(gateway.telemetry.mode, 'on');
    assert.equal(gateway.telemetry.metricsPort, undefined);
    const host = parseConfig(ACTOR_HOST_CONFIG, {});
    assert.equal(host.host.concurrency, 4);
    assert.deepEqual(host.host.retryScheduleMs, [1000, 5000, 15000, 30000]);
    assert.equal(host.host.heartbeatMs, 10_000);
    assert.equal(host.host.drainGraceMs, 30_000);
    assert.equal(host.host.isolation, 'worker-thread');
    const controller = parseConfig(CONTROLLER_CONFIG, {});
    assert.equal(controller.controller.leaseMs, 10_000);
    assert.ok(controller.controller.rules.length > 0, 'the default rules file is read');
    const launcher = readLauncherConfig([], {});
    assert.ok(launcher.type === 'run');
    assert.deepEqual(launcher.settings.launcher.regions, ['local']);
    assert.equal(launcher.settings.launcher.port, 8080);
  });

  test('the launcher: a flag replaces its variable, and is named in errors as the flag', () => {
    const run = readLauncherConfig(
      ['--regions', 'eu,us', '--edge', 'pop1@eu', '--edge', 'pop2@us'],
      {
        VIGIL_REGIONS: 'NOT VALID',
      },
    );
    assert.ok(run.type === 'run');
    assert.deepEqual(run.settings.launcher.regions, ['eu', 'us']);
    assert.deepEqual(run.settings.launcher.edges, [
      { site: 'pop1', region: 'eu' },
      { site: 'pop2', region: 'us' },
    ]);
    const err = problem(() => readLauncherConfig(['--nodes', '9'], { VIGIL_PORT: 'x' }));
    assert.deepEqual(err.variables, ['VIGIL_PORT', '--nodes']);
  });

  test('actor host: only built-in models; the JSON settings name their field', () => {
    assert.match(
      problem(() => parseConfig(ACTOR_HOST_CONFIG, { VIGIL_MODELS: 'echo,gpt-9' })).message,
      /^VIGIL_MODELS names 'gpt-9'; built-in models are echo, ngram-chat, hash-embed$/,
    );
    assert.match(
      problem(() => parseConfig(ACTOR_HOST_CONFIG, { VIGIL_BREAKER: '{"failureRatio":2}' }))
        .message,
      /^VIGIL_BREAKER\.failureRatio: /,
    );
  });
});
