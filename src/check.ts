/**
 * One line of `pgbell doctor`. Its checks live with what they check (sources/walcheck.ts,
 * fanout/check.ts), below the CLI that prints them, so the type lives here, below both.
 */
export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}
