/**
 * The benchmark report: JSON (everything measured), markdown (docs/benchmarks.md) and two SVG
 * images: a chart of the headline figures and, with --profile, a flame graph of pgbell's CPU
 * profile during the throughput scenario.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Percentiles } from './run.js';

/** What a target cost the database over a run (see measureDb in run.ts). */
export interface DbCost {
  /** Statements the target's sessions ran (pg_stat_statements calls; null without the extension). */
  queries: number | null;
  /** Rows those statements returned or changed. */
  rows: number | null;
  /** Their execution time in the server, ms. */
  execMs: number | null;
  /** CPU time (user + system) of the target's backends, walsenders included, s (null when Postgres is not on this machine). */
  cpuSeconds: number | null;
  /** The target's connections to the database at the end. */
  connections: number;
  /** Its most frequent statements (the start of their text) and their calls. */
  top?: Array<{ query: string; calls: number }>;
  /** The longest single execution among its statements, ms (pg_stat_statements' max_exec_time). */
  longestMs?: number | null;
}

export interface Report {
  at: string;
  machine: { cpus: number; cpuModel: string; memGiB: number; node: string; postgres: string };
  params: Record<string, number>;
  latency: Array<{ target: string; clients?: number; sockets: number; users: number; rate: number; achievedRate: number; expected: number; delivered: number; foreign: number; fromAck: Percentiles; fromSend: Percentiles; cpuSeconds?: number; commit?: Percentiles; db?: DbCost }>;
  connections: Array<{ target: string; clients?: number; sockets: number; connectMs: number; failed: number; rssIdle: number; rssHeld: number; perSocket: number }>;
  throughput: Array<{ target: string; case: string; alerts: number; delivered: number; foreign: number; seconds: number; perSecond: number; ackToLastMs: number }>;
  writerTax: Array<{ writers: number; off: number; notify: number; poll: number; wal?: number }>;
  profile: ProfileSummary | null;
  /** pgbell's own view of the latency runs (from its /metrics): delivery and read times, event-loop delay. */
  inside?: Array<{ target: string; clients: number; deliveryMs: number; notifications: number; readMs: number | null; reads: number; loopP50Ms: number; loopP99Ms: number }>;
  /** The reconnect storm (see storm() in run.ts). */
  storm?: { sockets: number; clients: number; backMs: number; stoppedMs: number; upMs: number; live: number; refused: number; peakPending: number; alerts: number; lost: number; repeats: number; foreign: number; db?: DbCost; rolling?: { workers: number; doneMs: number; backMs: number; live: number; alerts: number; lost: number; repeats: number; foreign: number } };
}

export interface ProfileSummary {
  /** The scenario profiled. */
  scenario?: string;
  totalMs: number;
  /** Self time by function, largest first. */
  top: Array<{ name: string; where: string; selfMs: number; share: number }>;
  /** Absent when the report is rewritten from its JSON (the flame graph is written once). */
  flame?: FlameNode;
}

interface FlameNode {
  name: string;
  value: number;
  children: FlameNode[];
}

interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number; children?: number[] }>;
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Self time per function and a call tree for the flame graph, from a V8 .cpuprofile. */
export function summarizeProfile(p: CpuProfile): ProfileSummary {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) selfUs.set(p.samples[i]!, (selfUs.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0));
  const totalUs = p.endTime - p.startTime;
  const label = (n: CpuProfile['nodes'][number]) => n.callFrame.functionName || '(anonymous)';
  const where = (n: CpuProfile['nodes'][number]) => {
    const url = n.callFrame.url.replace(/^file:\/\//, '');
    const short = url.includes('node_modules/') ? url.slice(url.lastIndexOf('node_modules/') + 13) : url.replace(/^.*\/(src|dist)\//, '$1/');
    return short ? `${short}:${n.callFrame.lineNumber + 1}` : '';
  };
  const agg = new Map<string, { name: string; where: string; us: number }>();
  for (const [id, us] of selfUs) {
    const n = byId.get(id)!;
    const key = `${label(n)} ${where(n)}`;
    const a = agg.get(key) ?? { name: label(n), where: where(n), us: 0 };
    a.us += us;
    agg.set(key, a);
  }
  const top = [...agg.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, 20)
    .map((a) => ({ name: a.name, where: a.where, selfMs: a.us / 1000, share: a.us / totalUs }));
  const build = (id: number): FlameNode => {
    const n = byId.get(id)!;
    const children = (n.children ?? []).map(build).filter((c) => c.value > 0);
    const value = (selfUs.get(id) ?? 0) + children.reduce((s, c) => s + c.value, 0);
    return { name: `${label(n)} ${where(n)}`.trim(), value, children };
  };
  const root = p.nodes.find((n) => !p.nodes.some((m) => m.children?.includes(n.id)))!;
  return { totalMs: totalUs / 1000, top, flame: build(root.id) };
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** An icicle-style flame graph: root at the top, width = time, frames under 0.3% left out. */
function flameSvg(root: FlameNode): string {
  const W = 1200;
  const H = 16;
  const rects: string[] = [];
  let depthMax = 0;
  const draw = (n: FlameNode, x: number, depth: number) => {
    const w = (n.value / root.value) * W;
    if (w < W * 0.003) return;
    depthMax = Math.max(depthMax, depth);
    const hue = n.name.includes('node_modules') ? 40 : n.name.includes('src/') || n.name.includes('dist/') ? 10 : 200;
    const text = w > 40 ? `<text x="${(x + 3).toFixed(1)}" y="${depth * H + 12}" font-size="10" font-family="monospace">${esc(n.name.slice(0, Math.floor(w / 6.2)))}</text>` : '';
    rects.push(`<g><title>${esc(n.name)} (${((n.value / root.value) * 100).toFixed(1)}%)</title><rect x="${x.toFixed(1)}" y="${depth * H}" width="${w.toFixed(1)}" height="${H - 1}" fill="hsl(${hue},70%,${60 + (depth % 3) * 6}%)"/>${text}</g>`);
    let cx = x;
    for (const c of n.children) {
      draw(c, cx, depth + 1);
      cx += (c.value / root.value) * W;
    }
  };
  draw(root, 0, 0);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${(depthMax + 1) * H}" viewBox="0 0 ${W} ${(depthMax + 1) * H}">${rects.join('')}</svg>\n`;
}

/** Horizontal bars: commit→socket p50 and p99 per target, and delivered alerts/s per target and case. */
function chartSvg(r: Report): string {
  const rows: Array<{ group: string; label: string; value: number; unit: string }> = [];
  for (const l of r.latency) {
    rows.push({ group: 'commit → socket latency (ms, lower is better)', label: `${l.target} p50`, value: l.fromAck.p50, unit: 'ms' });
    rows.push({ group: 'commit → socket latency (ms, lower is better)', label: `${l.target} p99`, value: l.fromAck.p99, unit: 'ms' });
  }
  for (const t of r.throughput) rows.push({ group: 'delivered alerts/s (higher is better)', label: `${t.target} ${t.case.slice(0, 2)}`, value: t.perSecond, unit: '/s' });
  for (const c of r.connections) rows.push({ group: 'RSS per idle socket (KiB, lower is better)', label: c.target, value: c.perSocket / 1024, unit: 'KiB' });
  const groups = [...new Set(rows.map((x) => x.group))];
  const out: string[] = [];
  let y = 10;
  for (const g of groups) {
    out.push(`<text x="10" y="${y + 14}" font-size="14" font-weight="bold">${esc(g)}</text>`);
    y += 24;
    const mine = rows.filter((x) => x.group === g);
    const max = Math.max(...mine.map((x) => (Number.isFinite(x.value) ? x.value : 0)), 1e-9);
    for (const x of mine) {
      const w = Number.isFinite(x.value) ? (x.value / max) * 600 : 0;
      const fill = x.label.startsWith('pgbell') ? '#d9480f' : '#868e96';
      out.push(`<text x="10" y="${y + 12}" font-size="12">${esc(x.label)}</text><rect x="180" y="${y}" width="${w.toFixed(1)}" height="15" fill="${fill}"/><text x="${(185 + w).toFixed(1)}" y="${y + 12}" font-size="12">${x.value >= 100 ? x.value.toFixed(0) : x.value.toFixed(2)} ${x.unit}</text>`);
      y += 19;
    }
    y += 12;
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="900" height="${y}" viewBox="0 0 900 ${y}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>${out.join('')}</svg>\n`;
}

const fmt = (n: number, d = 2) => (Number.isFinite(n) ? n.toFixed(d) : '–');

function markdown(r: Report): string {
  const m = r.machine;
  const lines: string[] = [];
  lines.push('# pgbell benchmarks', '');
  lines.push(`Measured ${r.at.slice(0, 10)} on ${m.cpus} cores (${m.cpuModel}), ${m.memGiB} GiB, Node ${m.node}, PostgreSQL ${m.postgres}: the daemon, Postgres, the writers and the client processes all share these cores. Reproduce with \`npm run bench\` (see the header of test/bench/run.ts for the options); the raw figures are in benchmarks.json.`, '');
  lines.push(`Parameters: ${Object.entries(r.params).map(([k, v]) => `${k} ${v}`).join(', ')}.`, '');
  lines.push('![figures](benchmarks.svg)', '');
  lines.push(...roundTwo(r), ...targets(r));
  if (r.latency.length) {
    lines.push('## Latency: commit → socket', '');
    lines.push('The writer stamps each INSERT before sending it and when its commit is acknowledged; the client processes stamp receipt, all with the same monotonic clock. "from ack" can undercount by the ack\'s own trip; "from send" overcounts by the INSERT\'s execution.', '');
    lines.push('Times in ms. "server CPU" is the target process\'s user + system time over the run, per alert delivered.', '');
    lines.push('| target | clients | sockets | INSERTs/s | delivered | p50 | p90 | p99 | p99.9 | max | p50 from send | server CPU |', '|---|---|---|---|---|---|---|---|---|---|---|---|');
    for (const l of r.latency) {
      const a = l.fromAck;
      const cpu = l.cpuSeconds === undefined ? '–' : `${((l.cpuSeconds / l.delivered) * 1e6).toFixed(0)} µs`;
      lines.push(`| ${l.target} | ${l.clients ?? r.params.clients} | ${l.sockets} | ${l.achievedRate.toFixed(0)} | ${l.delivered}/${l.expected}${l.foreign ? ` (**${l.foreign} wrong user**)` : ''} | ${fmt(a.p50)} | ${fmt(a.p90)} | ${fmt(a.p99)} | ${fmt(a.p999)} | ${fmt(a.max, 1)} | ${fmt(l.fromSend.p50)} | ${cpu} |`);
    }
    lines.push('');
    const wal = r.latency.find((l) => l.target === 'pgbell-wal');
    const floorW = r.latency.find((l) => l.target === 'relay-wal');
    if (wal && floorW) lines.push(`pgbell in WAL mode against floor W (relay-wal): p50 ${fmt(wal.fromAck.p50 / floorW.fromAck.p50)}×, p99 ${fmt(wal.fromAck.p99 / floorW.fromAck.p99)}×.`, '');
    const pg = r.latency.find((l) => l.target === 'pgbell');
    if (pg) {
      lines.push('pgbell\'s ratio to each (p50, p99):', '');
      for (const l of r.latency) if (!l.target.startsWith('pgbell')) lines.push(`- ${l.target}: ${fmt(pg.fromAck.p50 / l.fromAck.p50)}× / ${fmt(pg.fromAck.p99 / l.fromAck.p99)}×`);
      lines.push('');
      const dbg = r.latency.find((l) => l.target === 'pgbell-debug');
      if (dbg) {
        const cpu = (l: typeof pg) => (l.cpuSeconds ?? NaN) / l.delivered;
        lines.push(`Cost of the per-alert and per-socket log lines (pgbell-debug against pgbell at its default level, info): p50 ${fmt(dbg.fromAck.p50 / pg.fromAck.p50)}×, p99 ${fmt(dbg.fromAck.p99 / pg.fromAck.p99)}×, server CPU per delivery ${fmt(cpu(dbg) / cpu(pg))}×.`, '');
      }
      const quiet = r.latency.find((l) => l.target === 'pgbell-warn');
      if (quiet) {
        const cpu = (l: typeof pg) => (l.cpuSeconds ?? NaN) / l.delivered;
        lines.push(`Cost of logging at the default level (pgbell at info against pgbell-warn): p50 ${fmt(pg.fromAck.p50 / quiet.fromAck.p50)}×, p99 ${fmt(pg.fromAck.p99 / quiet.fromAck.p99)}×, INSERTs/s achieved ${fmt(pg.achievedRate / quiet.achievedRate)}×, server CPU per delivery ${fmt(cpu(pg) / cpu(quiet))}×.`, '');
      }
    }
  }
  const floorR = r.latency.find((l) => l.target === 'relay-read');
  const pgNotify = r.latency.find((l) => l.target === 'pgbell');
  if (floorR && pgNotify) lines.push(`pgbell in notify mode against floor R (relay-read, which reads each notified transaction's rows as pgbell does): p50 ${fmt(pgNotify.fromAck.p50 / floorR.fromAck.p50)}×, p99 ${fmt(pgNotify.fromAck.p99 / floorR.fromAck.p99)}×.`, '');
  const committed = r.latency.filter((l) => l.commit);
  if (committed.length) {
    lines.push("## The writers' own commit", '');
    lines.push("Each paced INSERT's round trip, send to commit acknowledged, as the latency scenario's writers saw it: what the target costs an application's writers at that rate. Floor B's writers run a row trigger that sends a NOTIFY and nothing else; floor W's run no trigger.", '');
    lines.push('| target | clients | INSERTs/s | p50 | p90 | p99 | max |', '|---|---|---|---|---|---|---|');
    for (const l of committed) lines.push(`| ${l.target} | ${l.clients ?? r.params.clients} | ${l.achievedRate.toFixed(0)} | ${fmt(l.commit!.p50)} | ${fmt(l.commit!.p90)} | ${fmt(l.commit!.p99)} | ${fmt(l.commit!.max, 1)} |`);
    lines.push('');
    const floorB = r.latency.find((l) => l.target === 'relay' && l.commit);
    if (pgNotify?.commit && floorB?.commit) lines.push(`pgbell's writers (notify mode) against floor B's: p50 ${fmt(pgNotify.commit.p50 / floorB.commit.p50)}×, p99 ${fmt(pgNotify.commit.p99 / floorB.commit.p99)}×.`, '');
  }
  const costed = r.latency.filter((l) => l.db);
  if (costed.length || r.storm?.db) {
    lines.push('## What each target costs the database', '');
    lines.push("Over each latency run, the target's own sessions on its database (every backend but the writers' and the bench's, walsenders included): top-level statements, rows and server execution time from `pg_stat_statements`, and the backends' CPU from /proc, per 1,000 alerts delivered. The writers' INSERTs and the triggers inside them are the writers' cost, in the table above. The storm's row is per 1,000 sockets resumed, from the restart until all were back, with the alerts written meanwhile.", '');
    lines.push('| target | clients | per 1,000 | queries | rows | executing | backend CPU | connections |', '|---|---|---|---|---|---|---|---|');
    const per = (x: number | null, n: number, digits = 1) => (x === null ? '–' : ((x / n) * 1000).toFixed(digits));
    const row = (label: string, clients: number | string, what: string, d: DbCost, n: number) =>
      lines.push(`| ${label} | ${clients} | ${what} | ${per(d.queries, n)} | ${per(d.rows, n)} | ${per(d.execMs, n)} ms | ${d.cpuSeconds === null ? '–' : `${per(d.cpuSeconds * 1000, n)} ms`} | ${d.connections} |`);
    for (const l of costed) row(l.target, l.clients ?? r.params.clients!, 'alerts delivered', l.db!, l.delivered);
    if (r.storm?.db) row('pgbell (storm)', r.storm.clients, 'sockets resumed', r.storm.db, r.storm.live);
    lines.push('');
    const tops: Array<[string, DbCost]> = [...(pgNotify?.db ? [['pgbell, latency', pgNotify.db] as [string, DbCost]] : []), ...(r.storm?.db ? [['pgbell, storm', r.storm.db] as [string, DbCost]] : [])];
    for (const [label, d] of tops) if (d.top?.length) lines.push(`${label}, its most frequent statements: ${d.top.map((t) => `${t.calls} × \`${t.query.replace(/`/g, "'")}\``).join('; ')}.`, '');
  }
  if (r.connections.length) {
    lines.push('## Connections', '');
    lines.push('| target | clients | sockets | connect (+ auth for pgbell) | RSS before → after | RSS per idle socket |', '|---|---|---|---|---|---|');
    for (const c of r.connections) lines.push(`| ${c.target} | ${c.clients ?? r.params.clients} | ${c.sockets}${c.failed ? ` (${c.failed} failed)` : ''} | ${(c.connectMs / 1000).toFixed(1)} s | ${(c.rssIdle / 2 ** 20).toFixed(0)} → ${(c.rssHeld / 2 ** 20).toFixed(0)} MiB | ${(c.perSocket / 1024).toFixed(1)} KiB |`);
    lines.push('');
  }
  if (r.inside?.length) {
    lines.push('## Inside pgbell', '');
    lines.push('From pgbell\'s own /metrics over each latency run: a notification\'s arrival to its changes written to every socket (`pgbell_delivery_seconds`), the part of that waiting for the rows from Postgres (`pgbell_live_read_seconds`), and the event loop\'s delay (`nodejs_eventloop_lag`, over the paced run, less the 10 ms of its sampling timer).', '');
    lines.push('| target | clients | notification → sent (mean) | read (mean) | reads | notifications per read | event-loop delay p50 | p99 |', '|---|---|---|---|---|---|---|---|');
    for (const x of r.inside) lines.push(`| ${x.target} | ${x.clients} | ${fmt(x.deliveryMs)} ms | ${x.readMs === null ? '– (carried by the stream)' : `${fmt(x.readMs)} ms`} | ${x.reads} | ${x.reads > 0 ? fmt(x.notifications / x.reads) : '–'} | ${fmt(x.loopP50Ms)} ms | ${fmt(x.loopP99Ms)} ms |`);
    lines.push('');
  }
  if (r.storm) {
    const st = r.storm;
    lines.push('## Reconnect storm', '');
    lines.push(`${st.sockets} sockets over ${st.clients} client processes, each reconnecting as pgbell/client does (full-jitter backoff from 500 ms, resuming from its cursor), dropped at once by a restart of the daemon (SIGTERM, then a new process on the same port), while alerts were written throughout.`, '');
    lines.push('| all back (from the restart\'s start) | old daemon gone | new one healthy | refusals (1013) | peak unauthenticated | alerts written | lost | repeated | to the wrong user | database CPU | longest statement |', '|---|---|---|---|---|---|---|---|---|---|---|');
    const dbCpu = st.db?.cpuSeconds != null ? `${st.db.cpuSeconds.toFixed(2)} s` : '–';
    const longest = st.db?.longestMs != null ? `${st.db.longestMs.toFixed(1)} ms` : '–';
    lines.push(`| ${(st.backMs / 1000).toFixed(1)} s | ${(st.stoppedMs / 1000).toFixed(1)} s | ${(st.upMs / 1000).toFixed(1)} s | ${st.refused} | ${st.peakPending} | ${st.alerts} | ${st.lost} | ${st.repeats} | ${st.foreign} | ${dbCpu} | ${longest} |`, '');
    if (st.rolling) {
      const ro = st.rolling;
      lines.push(`Then a rolling restart (SIGHUP to the primary: the ${ro.workers} workers replaced one at a time), alerts written throughout: done in ${(ro.doneMs / 1000).toFixed(1)} s, all ${ro.live} sockets live after ${(ro.backMs / 1000).toFixed(1)} s; of ${ro.alerts} alerts in all, lost ${ro.lost}, repeated ${ro.repeats}, to the wrong user ${ro.foreign}.`, '');
    }
  }
  if (r.throughput.length) {
    lines.push('## Throughput', '');
    lines.push('From the first statement sent to the last alert received.', '');
    lines.push('| target | case | delivered | time | alerts/s | ack → last |', '|---|---|---|---|---|---|');
    for (const t of r.throughput) lines.push(`| ${t.target} | ${t.case} | ${t.delivered}/${t.alerts}${t.foreign ? ` (**${t.foreign} wrong user**)` : ''} | ${(t.seconds * 1000).toFixed(0)} ms | ${t.perSecond.toFixed(0)} | ${t.ackToLastMs.toFixed(0)} ms |`);
    lines.push('');
  }
  if (r.writerTax.length) {
    lines.push('## Writer tax', '');
    lines.push('Single-row autocommit INSERTs per second into "Alert", same server, same run: triggers disabled; pgbell\'s triggers (one NOTIFY per statement); poll mode (the same triggers, no NOTIFY); WAL mode (the same triggers, no NOTIFY, with pgbell-wal streaming the changes meanwhile).', '');
    lines.push('| writers | off | notify | ratio | poll | ratio | wal | ratio |', '|---|---|---|---|---|---|---|---|');
    for (const w of r.writerTax) lines.push(`| ${w.writers} | ${w.off.toFixed(0)} | ${w.notify.toFixed(0)} | ${fmt(w.notify / w.off)} | ${w.poll.toFixed(0)} | ${fmt(w.poll / w.off)} | ${w.wal === undefined ? '–' : w.wal.toFixed(0)} | ${w.wal === undefined ? '–' : fmt(w.wal / w.off)} |`);
    lines.push('');
  }
  if (r.profile) {
    lines.push('## Where pgbell\'s CPU goes', '');
    lines.push(`\`node --cpu-prof\` of \`pgbell start\` over the whole ${r.profile.scenario ?? 'throughput'} scenario (${(r.profile.totalMs / 1000).toFixed(1)} s, idle included). Flame graph: [benchmarks-flame.svg](benchmarks-flame.svg).`, '');
    lines.push('| self time | share | function | where |', '|---|---|---|---|');
    for (const t of r.profile.top) lines.push(`| ${t.selfMs.toFixed(0)} ms | ${(t.share * 100).toFixed(1)}% | ${esc(t.name)} | ${t.where} |`);
    lines.push('');
  }
  return lines.join('\n');
}

/** Goals, each with the figure measured in this run and whether it was met, as a markdown table. */
function goalTable() {
  const rows: Array<[string, string, boolean | null]> = [];
  return {
    /** A goal; `measured` undefined (or not finite) when this run did not measure it. */
    add(goal: string, measured: number | undefined, ok: (v: number) => boolean, show: (v: number) => string): void {
      const known = measured !== undefined && Number.isFinite(measured);
      rows.push([goal, known ? show(measured) : 'not measured', known ? ok(measured) : null]);
    },
    lines(): string[] {
      return ['| goal | this run | met |', '|---|---|---|', ...rows.map(([g, m, ok]) => `| ${g} | ${m} | ${ok === null ? '–' : ok ? 'yes' : '**no**'} |`), ''];
    },
  };
}

/** Alerts a set of runs did not deliver, plus those delivered to the wrong user. */
function shortfall(runs: Array<Report['latency'][number] | Report['throughput'][number]>): number {
  return runs.reduce((n, x) => n + ('expected' in x ? x.expected - x.delivered : x.alerts - x.delivered) + x.foreign, 0);
}

/**
 * The goals of the second performance round: ratios to floor B (the minimal relay) in the same
 * run, at each client-process count; the storm's absolute bound; nothing lost anywhere.
 */
function roundTwo(r: Report): string[] {
  const table = goalTable();
  const add = table.add;
  const n = (x: { clients?: number }) => x.clients ?? r.params.clients;
  const counts = [...new Set(r.latency.filter((l) => l.target === 'pgbell').map(n))];
  for (const c of counts) {
    const pg = r.latency.find((l) => l.target === 'pgbell' && n(l) === c);
    const relay = r.latency.find((l) => l.target === 'relay' && n(l) === c);
    const at = `${c} client processes`;
    add(`p50 ≤ 1.3× floor B, notify mode, default settings (${at})`, pg && relay ? pg.fromAck.p50 / relay.fromAck.p50 : undefined, (v) => v <= 1.3, (v) => `${v.toFixed(1)}× (${fmt(pg!.fromAck.p50)} against ${fmt(relay!.fromAck.p50)} ms)`);
    add(`p99 ≤ 2× floor B's p99 (${at})`, pg && relay ? pg.fromAck.p99 / relay.fromAck.p99 : undefined, (v) => v <= 2, (v) => `${v.toFixed(1)}× (${fmt(pg!.fromAck.p99)} against ${fmt(relay!.fromAck.p99)} ms)`);
    const cp = r.connections.find((x) => x.target === 'pgbell' && n(x) === c);
    const cr = r.connections.find((x) => x.target === 'relay' && n(x) === c);
    add(`RSS per idle authenticated socket ≤ floor B's + 1 KiB (${at})`, cp && cr ? (cp.perSocket - cr.perSocket) / 1024 : undefined, (v) => v <= 1, (v) => `${v >= 0 ? '+' : ''}${v.toFixed(2)} KiB (${(cp!.perSocket / 1024).toFixed(1)} against ${(cr!.perSocket / 1024).toFixed(1)} KiB)`);
    // With workers the floor (one process) holds one worker's share: the same sockets per process.
    const w = r.params.workers ?? 1;
    const perProcess = w > 1 ? `, ${w} workers of ${Math.round((cp?.sockets ?? 0) / w)}, against floor B's ${cr?.sockets ?? ''} in one process` : '';
    add(`authenticating ${cp?.sockets ?? ''} sockets ≤ 1.5× floor B's accepting them (${at}${perProcess})`, cp && cr ? cp.connectMs / cr.connectMs : undefined, (v) => v <= 1.5, (v) => `${v.toFixed(2)}× (${(cp!.connectMs / 1000).toFixed(1)} against ${(cr!.connectMs / 1000).toFixed(1)} s)`);
  }
  const first = counts[0];
  for (const c of counts) {
    const pg = r.latency.find((l) => l.target === 'pgbell' && n(l) === c);
    const floorR = r.latency.find((l) => l.target === 'relay-read' && n(l) === c);
    const at = `${c} client processes`;
    add(`notify mode p50 ≤ 1.3× floor R (${at})`, pg && floorR ? pg.fromAck.p50 / floorR.fromAck.p50 : undefined, (v) => v <= 1.3, (v) => `${v.toFixed(2)}× (${fmt(pg!.fromAck.p50)} against ${fmt(floorR!.fromAck.p50)} ms)`);
    add(`notify mode p99 ≤ 2× floor R's p99 (${at})`, pg && floorR ? pg.fromAck.p99 / floorR.fromAck.p99 : undefined, (v) => v <= 2, (v) => `${v.toFixed(2)}× (${fmt(pg!.fromAck.p99)} against ${fmt(floorR!.fromAck.p99)} ms)`);
  }
  const pgFirst = r.latency.find((l) => l.target === 'pgbell' && n(l) === first);
  const relayFirst = r.latency.find((l) => l.target === 'relay' && n(l) === first);
  const wc = pgFirst?.commit && relayFirst?.commit ? { pg: pgFirst.commit, b: relayFirst.commit } : undefined;
  add("notify mode: the writers' commit p50 ≤ 1.5× floor B's writers'", wc ? wc.pg.p50 / wc.b.p50 : undefined, (v) => v <= 1.5, (v) => `${v.toFixed(2)}× (${fmt(wc!.pg.p50)} against ${fmt(wc!.b.p50)} ms)`);
  add("notify mode: the writers' commit p99 ≤ 2× floor B's writers'", wc ? wc.pg.p99 / wc.b.p99 : undefined, (v) => v <= 2, (v) => `${v.toFixed(2)}× (${fmt(wc!.pg.p99)} against ${fmt(wc!.b.p99)} ms)`);
  const inside = r.inside?.find((x) => x.target === 'pgbell' && x.clients === first);
  const perStep = pgFirst?.db?.queries != null && inside && inside.reads > 0 ? pgFirst.db.queries / inside.reads : undefined;
  add('notify mode: ≤ 1 query per live read (each read serves the NOTIFYs of one step; probes included)', perStep, (v) => v <= 1, (v) => `${v.toFixed(2)} (${pgFirst!.db!.queries} statements, ${inside!.reads} live reads)`);
  const st = r.storm;
  const stormQueries = st?.db?.queries != null ? (st.db.queries / st.live) * 500 : undefined;
  add('a reconnect storm costs ≤ 1 query per 500 resuming users (the live reads of the alerts written meanwhile included)', stormQueries, (v) => v <= 1, (v) => `${v.toFixed(0)} per 500 (${st!.db!.queries} statements for ${st!.live} sockets)`);
  // The issue's bounds: 10,000 sockets back in 10 s; 60,000 (over workers) in 30 s.
  const stormBound = (st?.sockets ?? 0) > 10_000 ? 30_000 : 10_000;
  add(`reconnect storm (${st?.sockets ?? ''} sockets dropped by a restart${(r.params.workers ?? 1) > 1 ? ` of ${r.params.workers} workers` : ''}) all back ≤ ${stormBound / 1000} s, the unauthenticated cap holding`, st?.backMs, (v) => v <= stormBound, (v) => `${(v / 1000).toFixed(1)} s (${st!.refused} refusals, peak unauthenticated ${st!.peakPending})`);
  const runs = [...r.latency.filter((l) => l.target.startsWith('pgbell')), ...r.throughput.filter((t) => t.target.startsWith('pgbell'))];
  const lost = shortfall(runs) + (st ? st.lost + st.repeats + st.foreign : 0) + (st?.rolling ? st.rolling.lost + st.rolling.repeats + st.rolling.foreign : 0);
  add('nothing lost (or repeated, or misdelivered) in any scenario', runs.length || st ? lost : undefined, (v) => v === 0, (v) => (v === 0 ? 'none' : `${v}`));
  return ['## Goals', '', 'Each ratio is to a floor measured in the same run: floor B (the minimal relay, test/bench/peers/relay.ts) or floor R (the same relay reading each notified transaction\'s rows, test/bench/peers/relay-read.ts).', '', ...table.lines()];
}

/** The goals of the first round, each with the figure measured in this run and whether it was met. */
function targets(r: Report): string[] {
  const pg = r.latency.find((l) => l.target === 'pgbell');
  const relay = r.latency.find((l) => l.target === 'relay');
  const conn = (t: string) => r.connections.find((c) => c.target === t);
  const tp = (t: string, c: string) => r.throughput.find((x) => x.target === t && x.case.startsWith(c));
  const table = goalTable();
  const add = table.add;
  const rate = pg ? `${pg.achievedRate.toFixed(0)} INSERTs/s, ${pg.sockets} sockets` : '';
  add(`commit → socket p50 ≤ 1 ms (${rate})`, pg?.fromAck.p50, (v) => v <= 1, (v) => `${v.toFixed(2)} ms`);
  add(`commit → socket p99 ≤ 5 ms (${rate})`, pg?.fromAck.p99, (v) => v <= 5, (v) => `${v.toFixed(2)} ms`);
  add('p50 within 1.3× of floor B (minimal relay)', pg && relay ? pg.fromAck.p50 / relay.fromAck.p50 : undefined, (v) => v <= 1.3, (v) => `${v.toFixed(1)}×`);
  add('≥ 50,000 delivered/s, one alert per socket (a)', tp('pgbell', 'a')?.perSecond, (v) => v >= 50_000, (v) => `${v.toFixed(0)}/s`);
  add('≥ 150,000 alerts/s when bursts coalesce (b)', tp('pgbell', 'b')?.perSecond, (v) => v >= 150_000, (v) => `${v.toFixed(0)}/s`);
  add('≤ 5 KB RSS per idle authenticated socket', conn('pgbell')?.perSocket, (v) => v <= 5000, (v) => `${(v / 1024).toFixed(1)} KiB`);
  for (const c of ['a', 'b', 'c']) {
    const mine = tp('pgbell', c);
    const theirs = tp('socketio', c);
    add(`≥ 2× peer C's (Socket.IO) throughput (${c})`, mine && theirs ? mine.perSecond / theirs.perSecond : undefined, (v) => v >= 2, (v) => `${v.toFixed(2)}×`);
  }
  const mine = conn('pgbell');
  const theirs = conn('socketio');
  add("≤ 0.5× peer C's memory per connection", mine && theirs ? mine.perSocket / theirs.perSocket : undefined, (v) => v <= 0.5, (v) => `${v.toFixed(2)}×`);
  // Logging at the default level (info) against pgbell-warn: at most 10% of latency and throughput.
  const quiet = r.latency.find((l) => l.target === 'pgbell-warn');
  add('default-level logging: p50 ≤ 1.1× pgbell-warn', pg && quiet ? pg.fromAck.p50 / quiet.fromAck.p50 : undefined, (v) => v <= 1.1, (v) => `${v.toFixed(2)}×`);
  add('default-level logging: INSERTs/s achieved ≥ 0.9× pgbell-warn', pg && quiet ? pg.achievedRate / quiet.achievedRate : undefined, (v) => v >= 0.9, (v) => `${v.toFixed(2)}×`);
  // WAL mode (its own floor, W: a bare pgoutput consumer feeding the minimal relay).
  const wal = r.latency.find((l) => l.target === 'pgbell-wal');
  const floorW = r.latency.find((l) => l.target === 'relay-wal');
  const tax32 = r.writerTax.find((w) => w.writers === 32);
  add('WAL mode keeps ≥ 0.9 of the triggers-off INSERT rate at 32 writers', tax32?.wal !== undefined ? tax32.wal / tax32.off : undefined, (v) => v >= 0.9, (v) => `${v.toFixed(2)}`);
  add('WAL mode: p50 within 1.3× of floor W', wal && floorW ? wal.fromAck.p50 / floorW.fromAck.p50 : undefined, (v) => v <= 1.3, (v) => `${v.toFixed(2)}×`);
  add("WAL mode: p99 within 2× of floor W's p99", wal && floorW ? wal.fromAck.p99 / floorW.fromAck.p99 : undefined, (v) => v <= 2, (v) => `${v.toFixed(2)}×`);
  const walRuns = [...r.latency.filter((l) => l.target === 'pgbell-wal'), ...r.throughput.filter((t) => t.target === 'pgbell-wal')];
  const lost = shortfall(walRuns);
  add('WAL mode: nothing lost or misdelivered in any scenario', walRuns.length ? lost : undefined, (v) => v === 0, (v) => (v === 0 ? 'none' : `${v} lost or misdelivered`));
  return ['## Earlier goals', '', ...table.lines()];
}

/** The hand-written reading of the figures (test/bench/notes.md), appended to the report. */
async function notes(): Promise<string> {
  try {
    return '\n' + (await readFile(new URL('./notes.md', import.meta.url), 'utf8'));
  } catch {
    return '';
  }
}

/** docs/benchmarks.md: the tables made from `r`, then the hand-written reading (notes.md). */
export async function reportMarkdown(r: Report, withNotes = true): Promise<string> {
  return markdown(r) + (withNotes ? await notes() : '');
}

/** Writes benchmarks.json, benchmarks.md, benchmarks.svg (and the flame graph) into `dir`. */
export async function writeReport(r: Report, dir: string, withNotes = true): Promise<string[]> {
  const files: Array<[string, string]> = [
    ['benchmarks.json', JSON.stringify({ ...r, profile: r.profile ? { ...r.profile, flame: undefined } : null }, null, 2) + '\n'],
    ['benchmarks.svg', chartSvg(r)],
  ];
  if (r.profile?.flame) files.push(['benchmarks-flame.svg', flameSvg(r.profile.flame)]);
  files.push(['benchmarks.md', await reportMarkdown(r, withNotes)]);
  for (const [name, text] of files) await writeFile(path.join(dir, name), text);
  return files.map(([n]) => path.join(dir, n));
}
