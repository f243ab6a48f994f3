// Starts the real Sightline server for the browser tests: the compiled binary
// (SIGHTLINE_BIN, or target/debug/sightline, or target/release/sightline), a
// fresh SQLite file in a temporary folder, a free port on 127.0.0.1, and a
// known admin password. It can be stopped and started again on the same port
// and database, as a restart.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const PLAYGROUND_DIR = resolve(here, '..');
export const REPO_DIR = resolve(PLAYGROUND_DIR, '..');
export const ADMIN_PASSWORD = 'e2e-admin-password-1';

/** Polls `probe` until it returns a value other than undefined, or fails with the last thing seen. */
export async function waitFor(what, probe, { timeout = 15_000, interval = 100 } = {}) {
  const deadline = Date.now() + timeout;
  let last = 'nothing yet';
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false && value !== null) return value;
    } catch (e) {
      last = e instanceof Error ? e.message : String(e);
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last seen: ${last}`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

function binary() {
  const candidates = [
    process.env.SIGHTLINE_BIN,
    join(REPO_DIR, 'target', 'debug', 'sightline'),
    join(REPO_DIR, 'target', 'release', 'sightline'),
  ].filter(Boolean);
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new Error(
      `no server binary: run \`cargo build\` in ${REPO_DIR} (or set SIGHTLINE_BIN); looked at ${candidates.join(', ')}`,
    );
  }
  return found;
}

async function freePort() {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolvePort(port));
    });
  });
}

export class SightlineServer {
  constructor() {
    this.bin = binary();
    this.dir = mkdtempSync(join(tmpdir(), 'sightline-e2e-'));
    this.databaseUrl = `sqlite://${join(this.dir, 'sightline.db')}?mode=rwc`;
    this.child = null;
    this.log = '';
  }

  get origin() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start() {
    this.port ??= await freePort();
    const child = spawn(this.bin, ['serve', '--addr', `127.0.0.1:${this.port}`], {
      env: {
        ...process.env,
        DATABASE_URL: this.databaseUrl,
        SIGHTLINE_ADMIN_PASSWORD: ADMIN_PASSWORD,
        SIGHTLINE_LOG: process.env.SIGHTLINE_LOG ?? 'warn',
        SIGHTLINE_SHUTDOWN_TIMEOUT: '2s',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    const keep = (chunk) => {
      this.log = (this.log + chunk.toString()).slice(-20_000);
      if (process.env.E2E_SERVER_LOG) process.stderr.write(chunk);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    let exited = null;
    child.on('exit', (code, signal) => {
      exited = { code, signal };
    });
    await waitFor(`the server on port ${this.port} to answer /healthz`, async () => {
      if (exited) throw new Error(`server exited (${JSON.stringify(exited)}): ${this.log}`);
      const r = await fetch(`${this.origin}/healthz`);
      return r.ok;
    });
    return this;
  }

  /** Stops the server (SIGTERM, then SIGKILL after a grace period). */
  async stop() {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const done = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 8_000);
    await done;
    clearTimeout(timer);
    this.child = null;
  }

  async dispose() {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Fails when the binary embeds other pages than playground/dist holds. */
  async checkEmbeddedAssets() {
    const built = join(PLAYGROUND_DIR, 'dist', 'index.html');
    if (!existsSync(built)) {
      throw new Error('playground/dist is missing: run `npm ci && npm run build` in playground/');
    }
    for (const [path, file] of [
      ['/', 'index.html'],
      ['/dashboard', 'dashboard.html'],
    ]) {
      const served = await (await fetch(`${this.origin}${path}`)).text();
      if (served !== readFileSync(join(PLAYGROUND_DIR, 'dist', file), 'utf8')) {
        throw new Error(
          `the server serves another ${file} than playground/dist holds: rebuild the server (cargo build) after \`npm run build\``,
        );
      }
    }
  }

  /** One GraphQL request over HTTP, as another client would send it; returns `data` or throws. */
  async gql(query, variables = {}, token = null) {
    const headers = { 'content-type': 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    const r = await fetch(`${this.origin}/graphql`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ query, variables }),
    });
    const body = await r.json();
    if (body.errors?.length) throw new Error(`GraphQL error: ${JSON.stringify(body.errors)}`);
    return body.data;
  }

  async login(username = 'admin', password = ADMIN_PASSWORD) {
    const data = await this.gql(
      'mutation($input: LoginInput!) { login(input: $input) { token } }',
      { input: { username, password } },
    );
    return data.login.token;
  }
}
