import { defineConfig } from 'vite';

// Vite 8 compiles JSX with Oxc (its `esbuild` option is deprecated and mapped onto this one).
export default defineConfig({
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    reportCompressedSize: false,
    // One entry chunk and browsers from the last years: the polyfill would be dead weight.
    modulePreload: { polyfill: false },
  },
});
