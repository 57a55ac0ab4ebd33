/** Config: defaults, and one clear line naming the variable for every bad value. */
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, need } from '../src/config.js';

describe('loadConfig', () => {
  it('applies the documented defaults', () => {
    expect(loadConfig({})).toEqual({ PGBELL_FANOUT: 'listen', PGBELL_MODE: 'notify', PGBELL_POLL_MS: 100, PGBELL_WORKERS: 1, SESSION_SECRET_PREVIOUS: [], TOKEN_LEEWAY_SECONDS: 30, TOKEN_EXPIRING_SECONDS: 60, PORT: 8080, DEMO_PORT: 3007, HEARTBEAT_MS: 30000, AUTH_TIMEOUT_MS: 5000, PGBELL_CHANNEL: 'pgbell', ALERT_TYPES: [], ALLOWED_ORIGINS: [], MAX_REPLAY: 10000, MAX_CONNECTIONS: 20000, MAX_UNAUTHENTICATED: 1000, MAX_UNAUTHENTICATED_PER_ADDRESS: 100, MAX_HANDSHAKE_WAIT_MS: 10000, LISTEN_BACKLOG: 4096, WORKER_START_MS: 60000, MAX_WAITING_BYTES: 67108864, TRUST_PROXY_HOPS: 0, MAX_CONNECTIONS_PER_USER: 20, RATE_LIMIT: 100, RATE_WINDOW_MS: 10000, USER_RATE_LIMIT: 60, ADDRESS_RATE_LIMIT: 600, MAX_BUFFERED_BYTES: 1048576, TOMBSTONE_RETENTION_HOURS: 168 });
  });

  it('parses every variable', () => {
    const c = loadConfig({
      DATABASE_URL: 'postgres://u@h:5432/db',
      SESSION_SECRET: 's'.repeat(32),
      PORT: '9000',
      HOST: '127.0.0.1',
      HEARTBEAT_MS: '1000',
      AUTH_TIMEOUT_MS: '2000',
      PGBELL_CHANNEL: 'alerts_v2',
      LOG_LEVEL: 'warn',
    });
    expect(c).toMatchObject({ PORT: 9000, HEARTBEAT_MS: 1000, AUTH_TIMEOUT_MS: 2000, PGBELL_CHANNEL: 'alerts_v2', LOG_LEVEL: 'warn', HOST: '127.0.0.1' });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('PGBELL_WORKERS: a number of processes, or auto', () => {
    expect(loadConfig({ PGBELL_WORKERS: '4' }).PGBELL_WORKERS).toBe(4);
    expect(loadConfig({ PGBELL_WORKERS: 'auto' }).PGBELL_WORKERS).toBe('auto');
    for (const bad of ['0', '257', 'many', '2.5']) expect(() => loadConfig({ PGBELL_WORKERS: bad })).toThrow(/^PGBELL_WORKERS must be a whole number between 1 and 256, or auto/);
  });

  it('treats empty strings as unset', () => {
    expect(loadConfig({ PORT: '', DATABASE_URL: '' }).PORT).toBe(8080);
  });

  it.each([
    [{ PORT: 'abc' }, /^PORT must be a whole number between 0 and 65535 \(got "abc"\)$/],
    [{ PORT: '70000' }, /^PORT must be at most 65535/],
    [{ HEARTBEAT_MS: '5' }, /^HEARTBEAT_MS must be at least 100/],
    [{ AUTH_TIMEOUT_MS: '1.5' }, /^AUTH_TIMEOUT_MS must be a whole number/],
    [{ DATABASE_URL: 'mysql://x' }, /^DATABASE_URL must be a postgres:\/\/ or postgresql:\/\/ URL/],
    [{ SESSION_SECRET: 'short' }, /^SESSION_SECRET must be at least 32 characters/],
    [{ PGBELL_CHANNEL: 'Bad-Name' }, /^PGBELL_CHANNEL must be a lowercase Postgres identifier/],
    [{ LOG_LEVEL: 'loud' }, /^LOG_LEVEL /],
    [{ PGBELL_MODE: 'push' }, /^PGBELL_MODE must be notify \(the trigger sends NOTIFY\), poll .* or wal/],
    [{ PGBELL_POLL_MS: '5' }, /^PGBELL_POLL_MS must be at least 10/],
    [{ PGBELL_MODE: 'poll', PGBELL_FANOUT: 'redis', REDIS_URL: 'redis://127.0.0.1:6379' }, /^PGBELL_MODE=poll works with PGBELL_FANOUT=listen only/],
    [{ PGBELL_FANOUT: 'redis' }, /^REDIS_URL \(one Redis\) or REDIS_CLUSTER_NODES \(a Redis Cluster\) is required when PGBELL_FANOUT is redis$/],
    [{ REDIS_CLUSTER_NODES: 'redis://a:7000,b:7001' }, /^REDIS_CLUSTER_NODES must be a comma-separated list of redis:\/\/ or rediss:\/\/ URLs of cluster nodes/],
    [{ REDIS_URL: 'redis://a:6379', REDIS_CLUSTER_NODES: 'redis://a:7000' }, /^set REDIS_URL \(one Redis\) or REDIS_CLUSTER_NODES \(a Redis Cluster\), not both$/],
  ])('%o → ConfigError naming the variable', (env, message) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(message);
  });

  it('REDIS_CLUSTER_NODES is a list of node URLs', () => {
    expect(loadConfig({ PGBELL_FANOUT: 'redis', REDIS_CLUSTER_NODES: ' redis://a:7000, redis://b:7001 ' }).REDIS_CLUSTER_NODES).toEqual(['redis://a:7000', 'redis://b:7001']);
  });

  it('never echoes a secret back', () => {
    expect(() => loadConfig({ SESSION_SECRET: 'hunter2hunter2' })).toThrow(/got "hu\*\*\*\(14 chars\)"/);
  });

  it('need() names the variable and the command', () => {
    expect(() => need(loadConfig({}), 'DATABASE_URL', 'start')).toThrow('DATABASE_URL is required for `pgbell start`');
  });
});
