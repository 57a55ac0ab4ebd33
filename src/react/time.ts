/** "3 minutes ago", "yesterday": the bell's relative times, in the browser's language. */

const STEPS: [Intl.RelativeTimeFormatUnit, number][] = [
  ['second', 60],
  ['minute', 60],
  ['hour', 24],
  ['day', 7],
  ['week', 4.35],
  ['month', 12],
  ['year', Infinity],
];

let format: Intl.RelativeTimeFormat | undefined;

export function relativeTime(iso: string, now: number): string {
  format ??= new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
  let value = (new Date(iso).getTime() - now) / 1000;
  if (Math.abs(value) < 10) return format.format(0, 'second');
  for (const [unit, size] of STEPS) {
    if (Math.abs(value) < size) return format.format(Math.round(value), unit);
    value /= size;
  }
  return iso;
}
