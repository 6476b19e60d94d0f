/** Which code a long run measured. */
import { execFileSync } from 'node:child_process';
import { PROJECT_ROOT } from '../../nodes/launcher/index.js';

/** `<short commit>` plus `+dirty` when the work tree had uncommitted changes. */
export function gitDescribe(): string {
  try {
    const run = (args: string[]) =>
      execFileSync('git', args, { cwd: PROJECT_ROOT, encoding: 'utf8', timeout: 5_000 }).trim();
    const commit = run(['rev-parse', '--short', 'HEAD']);
    return run(['status', '--porcelain', '--untracked-files=no']) === ''
      ? commit
      : `${commit}+dirty`;
  } catch {
    return 'unknown';
  }
}
