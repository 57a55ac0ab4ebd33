// Prints the minified and gzipped size of pgbell/client and of pgbell/react (the hook and
// <NotificationBell />, React itself left out), as docs/client.md reports them.
import { build } from 'esbuild';
import { gzipSync } from 'node:zlib';
const size = async (entry, external = []) => {
  const r = await build({ entryPoints: [entry], bundle: true, minify: true, write: false, format: 'esm', target: 'es2020', external, logLevel: 'error' });
  const code = r.outputFiles[0].contents;
  return `${(code.length / 1024).toFixed(1)} kB min, ${(gzipSync(code, { level: 9 }).length / 1024).toFixed(1)} kB gz`;
};
console.log('pgbell/client', await size(new URL('../src/client/index.ts', import.meta.url).pathname));
console.log('pgbell/react (hook + bell + client, without React)', await size(new URL('../src/react/index.ts', import.meta.url).pathname, ['react', 'react/jsx-runtime']));
