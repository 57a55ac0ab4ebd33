/** Runs the real CLI (bin/pgbell.js → dist/) as a subprocess. `npm test` builds dist first. */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../../bin/pgbell.js', import.meta.url));
if (!existsSync(fileURLToPath(new URL('../../dist/cli/cli.js', import.meta.url)))) {
  throw new Error('dist/ is missing: run the suite with `npm test` (it builds first) or run `npm run build`');
}

/** Only what the CLI should see: no DATABASE_URL etc. leaking in from the test runner's env. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, LOG_LEVEL: 'info' };
  return { ...env, ...extra };
}

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function run(args: string[], env: NodeJS.ProcessEnv, opts: { cwd?: string; timeoutMs?: number } = {}): Promise<Run> {
  const p = launch(args, env, opts.cwd);
  const timer = setTimeout(() => p.child.kill('SIGKILL'), opts.timeoutMs ?? 20_000);
  return p.exited.finally(() => clearTimeout(timer));
}

export interface Launched {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<Run>;
  /** Resolves with stdout once it matches `re`. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
}

export function launch(args: string[], env: NodeJS.ProcessEnv, cwd?: string, as?: { uid: number; gid: number }): Launched {
  const child = spawn(process.execPath, [BIN, ...args], { env, cwd, stdio: ['ignore', 'pipe', 'pipe'], ...as });
  let out = '';
  let err = '';
  const waiters = new Set<() => void>();
  child.stdout!.on('data', (d) => {
    out += d;
    for (const w of waiters) w();
  });
  child.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<Run>((resolve) =>
    child.on('close', (code, signal) => {
      for (const w of waiters) w();
      resolve({ code, signal, stdout: out, stderr: err });
    }),
  );
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitFor(re, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = out.match(re);
          if (m) {
            done();
            resolve(m);
          } else if (child.exitCode !== null || child.signalCode !== null) {
            done();
            reject(new Error(`process exited (${child.exitCode ?? child.signalCode}) before printing ${re}\nstdout: ${out}\nstderr: ${err}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`timed out waiting for ${re}\nstdout: ${out}\nstderr: ${err}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
  };
}
