// Imports the pages' TypeScript modules into Node for the tests, through
// Vite's module loader (the same transform the build uses).
import { createServer } from 'vite';

import { PLAYGROUND_DIR } from './server.mjs';

/** Loads each path (relative to playground/) and returns their exports, in order. */
export async function loadModules(...paths) {
  const vite = await createServer({
    root: PLAYGROUND_DIR,
    configFile: false,
    logLevel: 'silent',
    appType: 'custom',
    server: { middlewareMode: true, hmr: false, ws: false },
    optimizeDeps: { noDiscovery: true, include: [] },
  });
  try {
    const out = [];
    for (const path of paths) out.push(await vite.ssrLoadModule(path));
    return out;
  } finally {
    await vite.close();
  }
}
