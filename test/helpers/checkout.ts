/** A copy of this tree as a fresh checkout would have it, for tests that run commands in one. */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const sh = promisify(execFile);
export const REPO = fileURLToPath(new URL('../..', import.meta.url));

/**
 * Copies the tracked and new files (not ignored ones) into `target`, and the installed folders
 * `installed` (node_modules, dist, …, relative to the repo) as hard links when on one file system
 * (instant), else as copies.
 */
export async function copyCheckout(target: string, installed: string[] = ['node_modules', 'dist']): Promise<void> {
  await sh('bash', ['-c', 'mkdir -p "$1" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$1"', 'bash', target], { cwd: REPO, maxBuffer: 1 << 24 });
  for (const d of installed) {
    await sh('bash', ['-c', 'cp -al "$1" "$2" 2>/dev/null || cp -a "$1" "$2"', 'bash', path.join(REPO, d), path.join(target, d)]);
  }
}
