import { defineConfig } from 'vite';

// Vite 8 compiles JSX with Oxc (its `esbuild` option is deprecated and mapped onto this one).
export default defineConfig({
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  // `npx vite web` for working on the page: the API (and its live stream) from a running bridge.
  server: { proxy: { '/api': process.env.FAULTLINE_URL ?? 'http://127.0.0.1:8080' } },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    reportCompressedSize: false,
    // One entry chunk and browsers from the last years: the polyfill would be dead weight.
    modulePreload: { polyfill: false },
  },
});
