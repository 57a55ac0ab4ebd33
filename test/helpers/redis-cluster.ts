/**
 * A real Redis Cluster on loopback for tests: 3 masters and 3 replicas of Debian's
 * `redis-server`, joined by `redis-cli --cluster create`. Nothing is downloaded. Each node runs
 * in a temp dir of its own and is killed (and the dir removed) by stop(). With `tls`, openssl
 * makes a CA and a certificate for 127.0.0.1 in that dir, and every node serves clients, the
 * cluster bus and replication over TLS only.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

export interface ClusterNode {
  port: number;
  url: string;
  process: ChildProcess;
}

export interface TestCluster {
  nodes: ClusterNode[];
  /** redis://127.0.0.1:port (rediss:// with `tls`) of every node, for REDIS_CLUSTER_NODES. */
  urls: string[];
  /** With `tls`: the PEM file of the CA that signed the nodes' certificate. */
  caFile?: string;
  /** The masters now, by port, with their slot ranges. */
  masters(): Promise<Array<{ port: number; slots: Array<[number, number]> }>>;
  /** Runs redis-cli against one node. */
  cli(port: number, ...args: string[]): Promise<string>;
  /** Waits until every live node reports cluster_state:ok and every slot has a live master. */
  healthy(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export function haveRedisServer(): boolean {
  return existsSync('/usr/bin/redis-server') && existsSync('/usr/bin/redis-cli');
}

function free(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** A port p with p and p + 10000 (its cluster bus) both free. */
async function clusterPort(taken: Set<number>): Promise<number> {
  for (;;) {
    const p = 20000 + Math.floor(Math.random() * 20000);
    if (taken.has(p) || taken.has(p + 10000) || taken.has(p - 10000)) continue;
    if ((await free(p)) && (await free(p + 10000))) {
      taken.add(p);
      return p;
    }
  }
}

/** A CA and a certificate for 127.0.0.1 (as an IP SAN, which Node checks) signed by it, in `dir`. */
async function makeCertificates(dir: string): Promise<{ ca: string; cert: string; key: string }> {
  const [ca, caKey, cert, key, csr, ext] = ['ca.pem', 'ca.key', 'node.pem', 'node.key', 'node.csr', 'node.ext'].map((f) => join(dir, f)) as [string, string, string, string, string, string];
  const openssl = (...args: string[]) => exec('openssl', args, { timeout: 30_000 });
  await openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', caKey, '-out', ca, '-days', '2', '-subj', '/CN=pgbell test CA');
  await openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', csr, '-subj', '/CN=127.0.0.1');
  await writeFile(ext, 'subjectAltName = IP:127.0.0.1\n');
  await openssl('x509', '-req', '-in', csr, '-CA', ca, '-CAkey', caKey, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', ext);
  return { ca, cert, key };
}

/**
 * `password`: every node has requirepass (and masterauth) set to it, and `urls` carry it.
 * `tls`: every node listens with TLS only (`--port 0`); `urls` are rediss://, and `caFile` is the
 * CA a client must trust.
 */
export async function startRedisCluster(opts: { password?: string; tls?: boolean } = {}): Promise<TestCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'pgbell-redis-cluster-'));
  const certs = opts.tls ? await makeCertificates(dir) : null;
  const auth = [...(opts.password ? ['-a', opts.password, '--no-auth-warning'] : []), ...(certs ? ['--tls', '--cacert', certs.ca] : [])];
  const taken = new Set<number>();
  const nodes: ClusterNode[] = [];
  const cli = async (port: number, ...args: string[]) => (await exec('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...auth, ...args], { timeout: 30_000 })).stdout;
  for (let i = 0; i < 6; i++) {
    // With TLS the cluster bus is the TLS port + 10000, as it is the plain port's without.
    const port = await clusterPort(taken);
    const listen = certs
      ? ['--port', '0', '--tls-port', String(port), '--tls-cluster', 'yes', '--tls-replication', 'yes', '--tls-cert-file', certs.cert, '--tls-key-file', certs.key, '--tls-ca-cert-file', certs.ca, '--tls-auth-clients', 'no']
      : ['--port', String(port)];
    const child = spawn(
      'redis-server',
      [...listen, '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', '1000', '--dir', dir, '--save', '', '--appendonly', 'no', '--logfile', join(dir, `${port}.log`), ...(opts.password ? ['--requirepass', opts.password, '--masterauth', opts.password] : [])],
      { stdio: 'ignore' },
    );
    nodes.push({ port, url: `${certs ? 'rediss' : 'redis'}://${opts.password ? `:${encodeURIComponent(opts.password)}@` : ''}127.0.0.1:${port}`, process: child });
  }
  const alive = (n: ClusterNode) => n.process.exitCode === null && n.process.signalCode === null;
  for (const n of nodes) {
    for (let i = 0; ; i++) {
      if ((await cli(n.port, 'ping').catch(() => '')).trim() === 'PONG') break;
      if (i > 100) throw new Error(`redis-server on ${n.port} did not start (see ${dir}/${n.port}.log)`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  await exec('redis-cli', [...auth, '--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '1', '--cluster-yes'], { timeout: 60_000 });

  const cluster: TestCluster = {
    nodes,
    urls: nodes.map((n) => n.url),
    ...(certs ? { caFile: certs.ca } : {}),
    cli,
    async masters() {
      // CLUSTER NODES: <id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <link> <slots...>
      let out = '';
      for (const n of nodes.filter(alive)) {
        out = await cli(n.port, 'cluster', 'nodes').catch(() => '');
        if (out) break;
      }
      return out
        .trim()
        .split('\n')
        .map((l) => l.trim().split(' '))
        .filter((f) => f[2]!.split(',').includes('master') && !f[2]!.includes('fail') && f.length > 8)
        .map((f) => ({
          port: Number(/:(\d+)@/.exec(f[1]!)![1]),
          slots: f.slice(8).filter((r) => !r.startsWith('[')).map((r) => {
            const [from, to] = r.split('-').map(Number) as [number, number?];
            return [from, to ?? from] as [number, number];
          }),
        }));
    },
    async healthy(timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const states = await Promise.all(nodes.filter(alive).map((n) => cli(n.port, 'cluster', 'info').catch(() => '')));
        if (states.every((s) => /cluster_state:ok/.test(s) && /cluster_slots_ok:16384/.test(s))) return;
        if (Date.now() > deadline) throw new Error(`the Redis cluster is not healthy after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async stop() {
      for (const n of nodes) n.process.kill('SIGKILL');
      await Promise.all(nodes.map((n) => (alive(n) ? new Promise((r) => n.process.once('exit', r)) : null)));
      await rm(dir, { recursive: true, force: true });
    },
  };
  await cluster.healthy();
  // A replica that has not synced with its master would not take over from it.
  for (let i = 0; ; i++) {
    const infos = await Promise.all(nodes.map((n) => cli(n.port, 'info', 'replication')));
    const replicas = infos.filter((s) => /role:slave/.test(s));
    if (replicas.length === 3 && replicas.every((s) => /master_link_status:up/.test(s))) break;
    if (i > 600) throw new Error('the Redis cluster replicas did not sync with their masters');
    await new Promise((r) => setTimeout(r, 50));
  }
  return cluster;
}
