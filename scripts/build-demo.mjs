// Bundles the demo page (demo/main.tsx + React + pgbell/react) into dist/demo/app.js, so the demo
// server needs no network and no CDN. Run by `npm run build` (and so by install and test).
import { build } from 'esbuild';

await build({
  entryPoints: [new URL('../demo/main.tsx', import.meta.url).pathname],
  outfile: new URL('../dist/demo/app.js', import.meta.url).pathname,
  bundle: true,
  minify: true,
  format: 'iife',
  target: 'es2020',
  jsx: 'automatic',
  define: { 'process.env.NODE_ENV': '"production"' },
  logLevel: 'warning',
});
