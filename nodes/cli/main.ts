/**
 * `npx vigil <command>` (or `npm run vigil -- <command>`): operator commands against a running
 * edge. What it accepts is declared in `config.ts` (`--help` lists it). Exit codes: 0 done,
 * 1 failed (no edge, no such letter, NATS error, invalid setting), 2 bad usage.
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  createDeadLetterAdmin,
  MAX_DEAD_LETTER_LIST_LIMIT,
  NAME_TOKEN,
  VigilError,
  type DeadLetterAdmin,
} from '../../protocol/index.js';
import { renderHelp, ConfigError } from '../common/index.js';
import { PROJECT_ROOT } from '../launcher/index.js';
import { actorsList } from './actor-commands.js';
import { CLI_CONFIG, readCliSettings, vigilVersion } from './config.js';
import { credsGenerate } from './creds-commands.js';
import { dlqList, dlqReplay, dlqShow, type Output } from './dlq-commands.js';
import { CliError, connectToEdge, edgeTarget } from './edge-target.js';

/** Bad arguments: the message, then the usage, and exit code 2. */
class UsageError extends Error {
  override name = 'UsageError';
}

/** A command, parsed. */
type Command =
  | { type: 'creds'; outDir?: string; regions?: string[]; edgeSites?: string[] }
  | { type: 'actors'; json: boolean }
  | { type: 'list'; model?: string; limit?: number; fromSeq?: number; json: boolean }
  | { type: 'show'; seq: number; json: boolean }
  | { type: 'replay'; seq: number };

function positiveInt(raw: string | undefined, what: string, max = Number.MAX_SAFE_INTEGER): number {
  if (raw === undefined || !/^[1-9][0-9]{0,15}$/.test(raw) || Number(raw) > max) {
    throw new UsageError(`${what} must be an integer from 1 to ${max}, not '${raw ?? ''}'`);
  }
  return Number(raw);
}

const OPTIONS = {
  model: { type: 'string' },
  limit: { type: 'string' },
  from: { type: 'string' },
  json: { type: 'boolean' },
  out: { type: 'string' },
  regions: { type: 'string' },
  'edge-sites': { type: 'string' },
} as const;

function parseOptions(args: string[]) {
  try {
    return parseArgs({ args, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

function parse(args: string[]): Command | 'help' | 'version' {
  const [group, sub, ...rest] = args;
  if (group === undefined) throw new UsageError('no command given');
  if (group === 'help' || group === '--help' || group === '-h') return 'help';
  if (group === 'version' || group === '--version' || group === '-v') return 'version';
  if (group === 'actors') {
    const { values, positionals } = parseOptions(
      [sub, ...rest].filter((a): a is string => a !== undefined),
    );
    if (positionals.length > 0 || Object.keys(values).some((k) => k !== 'json')) {
      throw new UsageError('actors takes only --json');
    }
    return { type: 'actors', json: values.json === true };
  }
  if (group === 'creds') return parseCreds(sub, rest);
  if (group !== 'dlq') throw new UsageError(`unknown command '${group}'`);
  if (sub === undefined) throw new UsageError('dlq needs a subcommand: list, show or replay');
  if (sub === 'help' || sub === '--help' || sub === '-h') return 'help';
  const { values, positionals } = parseOptions(rest);
  const only = (allowed: readonly string[]): void => {
    const extra = Object.keys(values).find((name) => !allowed.includes(name));
    if (extra) throw new UsageError(`dlq ${sub} does not take --${extra}`);
  };
  const oneSeq = (): number => {
    if (positionals.length !== 1) throw new UsageError(`dlq ${sub} needs exactly one <seq>`);
    return positiveInt(positionals[0], '<seq>');
  };
  switch (sub) {
    case 'list': {
      only(['model', 'limit', 'from', 'json']);
      if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
      if (values.model !== undefined && !NAME_TOKEN.test(values.model)) {
        throw new UsageError(`--model '${values.model}' is not a model name`);
      }
      const command: Command = { type: 'list', json: values.json === true };
      if (values.model !== undefined) command.model = values.model;
      if (values.limit !== undefined) {
        command.limit = positiveInt(values.limit, '--limit', MAX_DEAD_LETTER_LIST_LIMIT);
      }
      if (values.from !== undefined) command.fromSeq = positiveInt(values.from, '--from');
      return command;
    }
    case 'show':
      only(['json']);
      return { type: 'show', seq: oneSeq(), json: values.json === true };
    case 'replay':
      only([]);
      return { type: 'replay', seq: oneSeq() };
    default:
      throw new UsageError(`unknown dlq subcommand '${sub}'`);
  }
}

function parseCreds(sub: string | undefined, rest: string[]): Command {
  if (sub !== 'generate') throw new UsageError('creds needs a subcommand: generate');
  const { values, positionals } = parseOptions(rest);
  const extra = Object.keys(values).find(
    (name) => !['out', 'regions', 'edge-sites'].includes(name),
  );
  if (extra) throw new UsageError(`creds generate does not take --${extra}`);
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  const command: Command = { type: 'creds' };
  if (values.out !== undefined) command.outDir = values.out;
  if (values.regions !== undefined)
    command.regions = names(values.regions, '--regions', 'a region');
  if (values['edge-sites'] !== undefined) {
    command.edgeSites = names(values['edge-sites'], '--edge-sites', 'an edge site');
  }
  return command;
}

/** A comma-separated list of names, each a subject token; `what` names one in an error. */
function names(list: string, flag: string, what: string): string[] {
  const parsed = list.split(',').map((r) => r.trim());
  const bad = parsed.find((r) => !NAME_TOKEN.test(r));
  if (bad !== undefined) throw new UsageError(`${flag}: '${bad}' is not ${what} name`);
  return parsed;
}

async function run(
  admin: DeadLetterAdmin,
  command: Exclude<Command, { type: 'actors' } | { type: 'creds' }>,
  out: Output,
): Promise<void> {
  switch (command.type) {
    case 'list': {
      const { type: _type, ...options } = command;
      return dlqList(admin, options, out);
    }
    case 'show':
      return dlqShow(admin, command.seq, command.json, out);
    case 'replay':
      return dlqReplay(admin, command.seq, out);
  }
}

async function main(args: string[]): Promise<number> {
  const stdout: Output = { write: (text) => void process.stdout.write(text) };
  let command: Command | 'help' | 'version';
  try {
    command = parse(args);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(
      `vigil: ${err.message}\n\nUsage: ${CLI_CONFIG.usage}\n` +
        '`npx vigil --help` lists the commands, their options and the settings.\n',
    );
    return 2;
  }
  if (command === 'help') {
    stdout.write(renderHelp(CLI_CONFIG));
    return 0;
  }
  if (command === 'version') {
    stdout.write(`${vigilVersion()}\n`);
    return 0;
  }
  let nc: NatsConnection | undefined;
  try {
    const settings = readCliSettings(process.env);
    if (command.type === 'creds') {
      const stateDir = settings.state.stateDir ?? join(PROJECT_ROOT, '.vigil');
      credsGenerate(
        {
          outDir: command.outDir ?? join(stateDir, 'nats-creds'),
          regions: command.regions ?? [settings.cli.region ?? 'local'],
          edgeSites: command.edgeSites ?? [],
        },
        stdout,
      );
      return 0;
    }
    const target = edgeTarget(settings);
    nc = await connectToEdge(target);
    if (command.type === 'actors') {
      await actorsList(nc, target.region, command.json, stdout);
      return 0;
    }
    const admin = await createDeadLetterAdmin(nc, { region: target.region });
    await run(admin, command, stdout);
    return 0;
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`vigil: invalid configuration: ${err.message}\n`);
      return 1;
    }
    if (err instanceof CliError || err instanceof VigilError) {
      const code = err instanceof VigilError ? ` [${err.code}]` : '';
      process.stderr.write(`vigil: ${err.message}${code}\n`);
      return 1;
    }
    process.stderr.write(`vigil: ${(err as Error).stack ?? String(err)}\n`);
    return 1;
  } finally {
    await nc?.close().catch(() => undefined);
  }
}

process.exitCode = await main(process.argv.slice(2));
