/**
 * The benchmark harness itself, at toy scale: it runs end to end against the test server,
 * every target delivers every alert to the right sockets, and it writes its report. (Speed is
 * not asserted here; `npm run bench` measures it.)
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, inject, it } from 'vitest';

const exec = promisify(execFile);

describe('npm run bench', () => {
  it('runs every target and scenario at toy scale and writes JSON, markdown and charts', async () => {
    const out = await mkdtemp(path.join(os.tmpdir(), 'pgbell-bench-test-'));
    const args = ['--import', 'tsx', 'test/bench/run.ts', '--sockets', '40', '--users', '8', '--rate', '100', '--seconds', '1', '--clients', '2,4', '--tax-writers', '1,2', '--tax-seconds', '0.3', '--burst-rows', '2000', '--poll-ms', '50', '--profile', '--out', out];
    const { stdout } = await exec(process.execPath, args, { env: { ...process.env, BENCH_DATABASE_URL: inject('pg').adminUrl }, timeout: 400_000, maxBuffer: 1 << 24 });
    expect(stdout).not.toMatch(/WRONG USER/);
    const report = JSON.parse(await readFile(path.join(out, 'benchmarks.json'), 'utf8'));
    // Every target with the first client count, pgbell and floors B and R again with the second.
    expect(report.latency.map((l: any) => `${l.target} ${l.clients}`)).toEqual(['pgbell 2', 'pgbell-debug 2', 'pgbell-poll 2', 'pgbell-wal 2', 'listen 0', 'relay 2', 'relay-read 2', 'relay-wal 2', 'socketio 2', 'broadcast 2', 'pgbell 4', 'relay 4', 'relay-read 4']);
    for (const l of report.latency) {
      expect(l.delivered, l.target).toBe(l.expected);
      expect(l.foreign, l.target).toBe(0);
      expect(l.fromAck.n, l.target).toBe(l.expected);
      if (l.target === 'listen') continue;
      // The writers' own commit, one sample per INSERT; the target's sessions on the database.
      expect(l.commit.n, l.target).toBe(100);
      // Peer D's server has no connection of its own: its writers POST each alert to it.
      if (l.target !== 'broadcast') expect(l.db.connections, l.target).toBeGreaterThan(0);
    }
    // Floor R and pgbell in notify mode both read: their statements are counted where the server has pg_stat_statements.
    for (const t of ['pgbell', 'relay-read']) {
      const db = report.latency.find((l: any) => l.target === t).db;
      if (db.queries !== null) expect(db.queries, t).toBeGreaterThan(0);
    }
    expect(report.throughput.map((t: any) => `${t.target} ${t.case[0]}`)).toEqual(
      ['pgbell', 'pgbell-wal', 'relay', 'relay-read', 'relay-wal', 'socketio'].flatMap((t) => ['a', 'b', 'c'].map((c) => `${t} ${c}`)),
    );
    for (const t of report.throughput) expect(t.delivered, `${t.target} ${t.case}`).toBe(t.alerts);
    expect(report.connections.map((c: any) => c.target)).toEqual(['pgbell', 'pgbell-debug', 'pgbell-poll', 'pgbell-wal', 'relay', 'relay-read', 'relay-wal', 'socketio', 'broadcast', 'pgbell', 'relay', 'relay-read']);
    // The storm: every socket back, every alert written meanwhile delivered to its user's sockets.
    expect(report.storm).toMatchObject({ sockets: 40, live: 40, lost: 0, repeats: 0, foreign: 0 });
    expect(report.storm.alerts).toBeGreaterThan(0);
    expect(report.inside.map((x: any) => `${x.target} ${x.clients}`)).toEqual(['pgbell 2', 'pgbell-debug 2', 'pgbell-wal 2', 'pgbell 4']);
    expect(report.writerTax.map((w: any) => w.writers)).toEqual([1, 2]);
    for (const w of report.writerTax) for (const k of ['off', 'notify', 'poll', 'wal']) expect(w[k]).toBeGreaterThan(0);
    expect(report.profile.top.length).toBeGreaterThan(0);
    const md = await readFile(path.join(out, 'benchmarks.md'), 'utf8');
    expect(md).toMatch(/## Goals/);
    expect(md).toMatch(/Cost of the per-alert and per-socket log lines \(pgbell-debug against pgbell at its default level, info\): p50 [\d.]+×/);
    expect(md).toMatch(/\| pgbell \| 2 \| 40 \|/);
    expect(md).toMatch(/\| p50 ≤ 1\.3× floor B, notify mode, default settings \(4 client processes\) \| [\d.]+× /);
    expect(md).toMatch(/\| nothing lost \(or repeated, or misdelivered\) in any scenario \| none \| yes \|/);
    expect(md).toMatch(/## Reconnect storm/);
    expect(md).toMatch(/pgbell in notify mode against floor R \(relay-read, [^)]*\): p50 [\d.]+×, p99 [\d.]+×/);
    expect(md).toMatch(/pgbell's writers \(notify mode\) against floor B's: p50 [\d.]+×, p99 [\d.]+×/);
    expect(md).toMatch(/## What each target costs the database/);
    expect(md).toMatch(/\| pgbell \(storm\) \| 2 \| sockets resumed \|/);
    expect(md).toMatch(/pgbell in WAL mode against floor W \(relay-wal\): p50 [\d.]+×, p99 [\d.]+×/);
    expect(md).toMatch(/\| WAL mode keeps ≥ 0\.9 of the triggers-off INSERT rate at 32 writers \| not measured \|/);
    expect(md).toMatch(/\| WAL mode: nothing lost or misdelivered in any scenario \| none \| yes \|/);
    expect(await readFile(path.join(out, 'benchmarks.svg'), 'utf8')).toMatch(/^<svg/);
    expect(await readFile(path.join(out, 'benchmarks-flame.svg'), 'utf8')).toMatch(/^<svg/);
  }, 410_000);
});
