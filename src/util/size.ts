/**
 * About how many bytes a decoded value holds in memory: what pgbell keeps of rows (the recent
 * transactions in src/delivery/recent.ts, a transaction streaming in src/sources/walrows.ts) is bounded by this,
 * not by a count of rows, since one row's `data` may be a few bytes or many megabytes.
 *
 * An estimate, not a measurement: text counts one byte a character, and every value, key and
 * container a fixed overhead near what V8 spends on it. It walks the value, once, at the cost of
 * serializing it.
 */

/** Fixed cost of a value or an object's entry (a pointer, a header). */
const SLOT = 16;

export function approxBytes(value: unknown): number {
  switch (typeof value) {
    case 'string':
      return SLOT + value.length;
    case 'number':
    case 'boolean':
    case 'undefined':
      return 8;
    case 'bigint':
      return SLOT + 8;
    case 'object': {
      if (value === null) return 8;
      if (value instanceof Date) return SLOT * 2;
      if (ArrayBuffer.isView(value)) return SLOT + value.byteLength;
      let n = SLOT * 2;
      if (Array.isArray(value)) {
        for (const v of value) n += approxBytes(v);
        return n;
      }
      if (value instanceof Map) {
        for (const [k, v] of value) n += approxBytes(k) + approxBytes(v);
        return n;
      }
      for (const k in value) n += SLOT + k.length + approxBytes((value as Record<string, unknown>)[k]);
      return n;
    }
    default:
      return SLOT;
  }
}
