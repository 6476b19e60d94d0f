/**
 * The first thing a node's `main.ts` does: read its arguments and environment against its
 * declared configuration. `--help` prints what the node accepts and exits 0; an unknown argument
 * exits 2; an invalid value writes one JSON log line naming the variable (no stack trace: the
 * operator's to fix, not a bug) and exits 1, before anything starts. The log level is one of the
 * values read, so even a bad `VIGIL_LOG_LEVEL` ends that way.
 */
import { pino, type Logger } from 'pino';
import { renderHelp } from './config-help.js';
import {
  ConfigError,
  parseConfig,
  type ConfigValues,
  type Env,
  type GroupMap,
  type NodeConfig,
} from './env.js';
import { createLogger, type LOG_SETTINGS } from './logger.js';

/** Exit code of a node whose configuration is invalid. */
export const EXIT_CONFIG = 1;
/** Exit code of a node given arguments it does not take. */
export const EXIT_USAGE = 2;

/** A program whose configuration includes the logging group, as `log`. */
export type LoggedGroups = GroupMap & { log: typeof LOG_SETTINGS };

/** What {@link readNodeConfig} found. */
export type NodeConfigOutcome<G extends GroupMap> =
  | { type: 'help'; text: string }
  | { type: 'invalid'; exitCode: number; message: string; variables: readonly string[] }
  | { type: 'ok'; settings: ConfigValues<G> };

/** Reads `argv` (which may only ask for help) and `env`; no side effects. */
export function readNodeConfig<G extends GroupMap>(
  config: NodeConfig<G>,
  argv: readonly string[],
  env: Env,
): NodeConfigOutcome<G> {
  if (argv.some((arg) => arg === '--help' || arg === '-h')) {
    return { type: 'help', text: renderHelp(config) };
  }
  if (argv.length > 0) {
    return {
      type: 'invalid',
      exitCode: EXIT_USAGE,
      message: `${config.node} takes no argument '${argv[0]}' (--help lists what it accepts)`,
      variables: [],
    };
  }
  try {
    return { type: 'ok', settings: parseConfig(config, env) };
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return {
      type: 'invalid',
      exitCode: EXIT_CONFIG,
      message: `invalid configuration: ${err.message}`,
      variables: err.variables,
    };
  }
}

/** The one line a node that cannot start writes, synchronously, in its log's format. */
export function writeStartUpFailure(
  node: string,
  message: string,
  fields: Record<string, unknown> = {},
): void {
  createLogger({ node }, 'info', pino.destination({ dest: 1, sync: true })).error(fields, message);
}

/**
 * Configures a node, or ends the process: prints help (exit 0), or one line about what is wrong
 * (exit 1 or 2). Returns the typed settings and the node's logger.
 */
export function startUp<G extends LoggedGroups>(
  config: NodeConfig<G>,
  argv: readonly string[],
  env: Env,
): { settings: ConfigValues<G>; logger: Logger } {
  const outcome = readNodeConfig(config, argv, env);
  switch (outcome.type) {
    case 'help':
      process.stdout.write(outcome.text);
      return process.exit(0);
    case 'invalid':
      writeStartUpFailure(
        config.node,
        outcome.message,
        outcome.variables.length > 0 ? { variables: outcome.variables } : {},
      );
      return process.exit(outcome.exitCode);
    case 'ok': {
      const { settings } = outcome;
      const { level } = (settings as ConfigValues<Pick<LoggedGroups, 'log'>>).log;
      return { settings, logger: createLogger({ node: config.node }, level) };
    }
  }
}
