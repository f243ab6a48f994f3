// Builds the two pages the server embeds (see ../build.rs): the GraphiQL
// playground (index.html, served at `/`) and the live dashboard
// (dashboard.html, served at `/dashboard`). Everything, web workers and fonts
// included, ends up under dist/ so the pages load nothing from another host.
import { resolve } from 'node:path';
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/',
  esbuild: { jsx: 'automatic' },
  worker: { format: 'es' },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    chunkSizeWarningLimit: 6000,
    rollupOptions: {
      // Libraries marked "use client" for React server components: the
      // directive means nothing in a browser bundle.
      onwarn(warning, warn) {
        if (warning.code === 'MODULE_LEVEL_DIRECTIVE') return;
        warn(warning);
      },
      input: {
        index: resolve(import.meta.dirname, 'index.html'),
        dashboard: resolve(import.meta.dirname, 'dashboard.html'),
      },
    },
  },
});
