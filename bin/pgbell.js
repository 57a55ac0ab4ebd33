#!/usr/bin/env node
// The CLI is compiled to dist/ by `npm install` (the prepare script) and `npm test` (pretest).
import { main } from '../dist/cli.js';

main(process.argv.slice(2)).then(
  (code) => {
    if (typeof code === 'number') process.exitCode = code;
  },
  (err) => {
    console.error(`pgbell: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  },
);
