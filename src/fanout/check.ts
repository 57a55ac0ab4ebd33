/**
 * `pgbell doctor`'s view of Redis fan-out: the one Redis answers and has sharded pub/sub (7.0+),
 * or the cluster serves every slot, and which of its nodes are failing.
 */
import { createClient } from 'redis';
import { redactUrlPasswords } from '../config.js';
import type { Check } from '../check.js';

export async function checkRedis(target: { url?: string | undefined; clusterNodes?: string[] | undefined }): Promise<Check> {
  const urls = target.clusterNodes ?? (target.url ? [target.url] : []);
  const errors: string[] = [];
  for (const url of urls) {
    // What is printed names the node, never its password.
    const shown = redactUrlPasswords(url);
    const client = createClient({ url, socket: { reconnectStrategy: false, connectTimeout: 3000 } });
    client.on('error', () => {});
    try {
      await client.connect();
      const version = /redis_version:(\S+)/.exec(await client.info('server'))?.[1] ?? '?';
      if (Number(version.split('.')[0]) < 7) {
        return { name: 'redis', ok: false, detail: `Redis ${version} at ${shown} has no sharded pub/sub (SPUBLISH): pgbell needs Redis 7 or later` };
      }
      if (!target.clusterNodes) return { name: 'redis', ok: true, detail: `Redis ${version} answers at ${shown}` };
      return cluster(await client.sendCommand(['CLUSTER', 'INFO']), await client.sendCommand(['CLUSTER', 'NODES']), shown);
    } catch (err) {
      errors.push(`${shown}: ${(err as Error).message}`);
    } finally {
      // A client that never connected is closed already, and says so by throwing.
      if (client.isOpen) client.destroy();
    }
  }
  const which = target.clusterNodes ? 'no node of REDIS_CLUSTER_NODES answers' : 'REDIS_URL does not answer';
  return { name: target.clusterNodes ? 'redis cluster' : 'redis', ok: false, detail: `${which} (${errors.join('; ')})` };
}

function cluster(info: unknown, nodes: unknown, via: string): Check {
  const field = (name: string) => new RegExp(`${name}:(\\S+)`).exec(String(info))?.[1] ?? '?';
  const lines = String(nodes).trim().split('\n').map((l) => l.trim().split(' '));
  const masters = lines.filter((f) => f[2]?.split(',').includes('master') && f.length > 8 && !/fail/.test(f[2]!));
  const failing = lines.filter((f) => /fail/.test(f[2] ?? '')).map((f) => `${f[1]!.split('@')[0]} (${f[2]!.split(',').filter((x) => x !== 'myself').join(',')})`);
  const ok = field('cluster_state') === 'ok' && field('cluster_slots_ok') === '16384';
  const detail = ok
    ? `state ok via ${via}: ${masters.length} masters serve all 16384 slots${failing.length ? `; failing nodes: ${failing.join(', ')}` : ''}`
    : `state ${field('cluster_state')} via ${via}: ${field('cluster_slots_ok')} of 16384 slots served (${field('cluster_slots_fail')} failed, ${field('cluster_slots_pfail')} possibly failing)${failing.length ? `; failing nodes: ${failing.join(', ')}` : ''}: a replica must take over or the node come back`;
  return { name: 'redis cluster', ok, detail };
}
