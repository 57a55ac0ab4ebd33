#!/usr/bin/env node
// The CLI is compiled to dist/ by `npm install` (the prepare script) and by `npm test` (pretest).
import { existsSync } from 'node:fs';

// The daemon never dies of SIGHUP (systemd's reload, a terminal's hangup): from here, before
// the modules load, until `start` installs its own handler (a rolling restart with workers).
if (process.argv.slice(2).includes('start')) process.on('SIGHUP', () => {});

const entry = new URL('../dist/cli/cli.js', import.meta.url);
if (!existsSync(entry)) {
  console.error('pgbell: dist/ is missing (installed with --ignore-scripts?); run `npm run build` in the pgbell directory');
  process.exit(1);
}
const { main } = await import(entry.href);

main(process.argv.slice(2)).then(
  (code) => {
    if (typeof code === 'number') process.exitCode = code;
  },
  (err) => {
    console.error(`pgbell: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  },
);
