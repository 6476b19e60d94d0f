/**
 * Typed reading of configuration from the environment, failing at start-up with a message that
 * names the variable, instead of a NaN deep inside the data path.
 */

/** A configuration value that cannot be used. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** An integer variable within [min, max], or `fallback` when unset. */
export function envInt(
  env: NodeJS.ProcessEnv,
  name: string,
  fallback: number,
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name}=${raw} must be an integer from ${min} to ${max}`);
  }
  return value;
}

/** A string variable matching `pattern`, or `fallback` when unset. */
export function envString(
  env: NodeJS.ProcessEnv,
  name: string,
  fallback: string,
  pattern?: RegExp,
): string {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (pattern && !pattern.test(raw))
    throw new ConfigError(`${name}=${raw} must match ${String(pattern)}`);
  return raw;
}

/** A JSON variable, or `undefined` when unset. */
export function envJson(env: NodeJS.ProcessEnv, name: string): unknown {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  try {
    return JSON.parse(raw);
  } catch (err) {
    throw new ConfigError(`${name} is not valid JSON: ${(err as Error).message}`);
  }
}

/** A comma-separated list of values each matching `pattern`; empty when unset. */
export function envList(env: NodeJS.ProcessEnv, name: string, pattern?: RegExp): string[] {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return [];
  const items = raw.split(',').map((item) => item.trim());
  for (const item of items) {
    if (item === '' || (pattern && !pattern.test(item)))
      throw new ConfigError(`${name}=${raw}: '${item}' must match ${String(pattern ?? /.+/)}`);
  }
  return items;
}
