/**
 * A PostgreSQL primary and a streaming standby of it on loopback, made with the machine's own
 * server binaries (initdb, pg_basebackup), for failover tests. As root the servers run as the
 * `postgres` system user. Each server lives in a temp dir of its own, removed by stop().
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { chown, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../src/cli/embedded.js';
import { query } from './pg.js';

const exec = promisify(execFile);

/** The newest server version's binaries on this machine, or null. */
export function serverBinaries(): string | null {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return null;
  const versions = readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'pg_basebackup')) && existsSync(join(root, v, 'bin', 'initdb')));
  versions.sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(root, versions[0], 'bin') : null;
}

const asRoot = userInfo().uid === 0;

/** Runs a server binary, as `postgres` when this process is root (Postgres refuses root). */
async function pgRun(bin: string, args: string[]): Promise<string> {
  const dir = serverBinaries()!;
  const [file, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', join(dir, bin), ...args]] : [join(dir, bin), args];
  try {
    return (await exec(file, argv, { timeout: 120_000 })).stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`${bin} ${args.join(' ')} failed: ${e.stderr || e.message}`);
  }
}

export class PgServer {
  private constructor(
    readonly dir: string,
    readonly port: number,
  ) {}

  url(database = 'postgres'): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${database}`;
  }

  static async #make(): Promise<{ dir: string; data: string; port: number }> {
    const dir = await mkdtemp(join(tmpdir(), 'pgbell-failover-'));
    if (asRoot) await chown(dir, Number((await exec('id', ['-u', 'postgres'])).stdout), Number((await exec('id', ['-g', 'postgres'])).stdout));
    return { dir, data: join(dir, 'data'), port: await freePort() };
  }

  /** A new primary: wal_level=logical, room for a standby and for pgbell's slots. */
  static async primary(): Promise<PgServer> {
    const { dir, data, port } = await PgServer.#make();
    await pgRun('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8']);
    const s = new PgServer(dir, port);
    await s.start();
    return s;
  }

  /** A streaming standby of `primary` (asynchronous unless the primary names it synchronous). */
  static async standbyOf(primary: PgServer): Promise<PgServer> {
    const { dir, data, port } = await PgServer.#make();
    await pgRun('pg_basebackup', ['-h', '127.0.0.1', '-p', String(primary.port), '-U', 'postgres', '-D', data, '-R', '-X', 'stream', '-c', 'fast', '--no-sync']);
    const s = new PgServer(dir, port);
    await s.start();
    return s;
  }

  get data(): string {
    return join(this.dir, 'data');
  }

  async start(): Promise<void> {
    const opts = [
      `-p ${this.port}`,
      `-c listen_addresses=127.0.0.1`,
      `-c unix_socket_directories=${this.dir}`,
      '-c wal_level=logical',
      '-c max_wal_senders=10',
      '-c max_replication_slots=10',
      '-c hot_standby=on',
      '-c fsync=off',
      '-c full_page_writes=off',
      '-c wal_receiver_status_interval=1s',
    ].join(' ');
    await pgRun('pg_ctl', ['-D', this.data, '-o', opts, '-l', join(this.dir, 'log'), '-w', '-t', '60', 'start']);
  }

  /** Stops it: `immediate` is a crash (nothing flushed that was not already). */
  async stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    await pgRun('pg_ctl', ['-D', this.data, '-m', mode, '-w', '-t', '60', 'stop']).catch(() => {});
  }

  /** A standby becomes a primary on a new timeline; resolves once it takes writes. */
  async promote(): Promise<void> {
    await pgRun('pg_ctl', ['-D', this.data, '-w', '-t', '60', 'promote']);
    for (let i = 0; ; i++) {
      const [r] = await query<{ r: boolean }>(this.url(), 'SELECT pg_is_in_recovery() AS r');
      if (!r!.r) return;
      if (i > 200) throw new Error('the standby did not leave recovery');
      await new Promise((res) => setTimeout(res, 50));
    }
  }

  /**
   * A standby stops receiving WAL (its primary_conninfo emptied, reloaded): what the primary
   * commits from now on never reaches it, as in an asynchronous failover that loses the tail.
   */
  async detach(): Promise<void> {
    await query(this.url(), `ALTER SYSTEM SET primary_conninfo = ''`);
    await query(this.url(), 'SELECT pg_reload_conf()');
    for (let i = 0; ; i++) {
      const [r] = await query<{ n: string }>(this.url(), 'SELECT count(*)::text AS n FROM pg_stat_wal_receiver');
      if (r!.n === '0') return;
      if (i > 200) throw new Error('the standby kept receiving WAL');
      await new Promise((res) => setTimeout(res, 50));
    }
  }

  /** Waits until this standby has replayed everything `primary` has written so far. */
  async caughtUpWith(primary: PgServer): Promise<void> {
    const [{ lsn }] = (await query<{ lsn: string }>(primary.url(), 'SELECT pg_current_wal_lsn()::text AS lsn')) as [{ lsn: string }];
    for (let i = 0; ; i++) {
      const [r] = await query<{ ok: boolean }>(this.url(), `SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok`, [lsn]);
      if (r!.ok) return;
      if (i > 600) throw new Error('the standby did not catch up with its primary');
      await new Promise((res) => setTimeout(res, 50));
    }
  }

  async destroy(): Promise<void> {
    await this.stop('immediate');
    await rm(this.dir, { recursive: true, force: true });
  }
}
