/**
 * The message on a user's Redis channel is a contract between nodes of different versions
 * during a rolling deploy: a node of the previous pgbell reads `unread` as a number per type
 * and `changes` as alerts and deletes only; a new node reads what an old relay published.
 */
import { describe, expect, it } from 'vitest';
import type { Change } from '../src/db/changes.js';
import { changesFromWire, changesToWire, countsFromWire, countsToWire, type Wire } from '../src/fanout/rediswire.js';

const alert = { id: 'a1', userId: 'u', type: 'billing', title: 't', message: '', link: null, data: null, read: false, seen: false, archived: false, createdAt: '2026-12-07T00:00:00.000Z' };
const changes: Change[] = [
  { kind: 'preferences', txid: 7n, userId: 'u', muted: ['news'] },
  { kind: 'alert', txid: 7n, insertTxid: 7n, seq: 3n, alert },
  { kind: 'delete', txid: 7n, id: 'a0', userId: 'u' },
  // Deleted (or moved away) and back: a socket that does not want it now is sent a delete.
  { kind: 'alert', txid: 7n, insertTxid: 7n, seq: 4n, replaced: true, alert: { ...alert, id: 'a9' } },
  // Its alert is back: not sent, but its transaction is recorded.
  { kind: 'delete', txid: 7n, id: 'a9', userId: 'u', outlived: true },
];

describe('the fan-out message', () => {
  it('a new relay publishes what an old node reads: unread numbers per type, and only alerts and deletes in changes', () => {
    const wire: Wire = { txid: '7', xmin: null, ...changesToWire(changes), ...countsToWire({ billing: { unread: 2, unseen: 1 } }) };
    const json = JSON.parse(JSON.stringify(wire));
    expect(json.unread).toEqual({ billing: 2 });
    expect(json.changes.map((c: { kind: string }) => c.kind)).toEqual(['alert', 'delete', 'alert', 'delete']);
    // The previous version's count: the sum of the numbers.
    expect(Object.values(json.unread as Record<string, number>).reduce((a, b) => a + b, 0)).toBe(2);
    // A new node gets everything back, the change of preferences first.
    expect(changesFromWire(json)).toEqual(changes);
    expect(countsFromWire(json)).toEqual({ billing: { unread: 2, unseen: 1 } });
  });

  it('a new node reads an old relay: unread numbers count as unread and unseen', () => {
    const old = { txid: '7', xmin: null, changes: [{ kind: 'alert', alert, txid: '7', insertTxid: '7', seq: '3' }], unread: { billing: 2 } };
    expect(countsFromWire(old as Wire)).toEqual({ billing: { unread: 2, unseen: 2 } });
    expect(changesFromWire(old as Wire)).toEqual([changes[1]]);
  });
});
