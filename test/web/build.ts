/**
 * Builds web/ into web/dist with Vite's JS API when the build is missing or
 * older than a source file. Test files run in parallel workers, so a lock
 * directory makes one build while the others wait for it.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const WEB_DIR = fileURLToPath(new URL('../../web', import.meta.url));
const INDEX = join(WEB_DIR, 'dist', 'index.html');
/** One lock per checkout: other checkouts on this machine build their own web/. */
const LOCK = join(
  tmpdir(),
  `faultline-web-build-${createHash('sha256').update(WEB_DIR).digest('hex').slice(0, 12)}`,
);
const STALE_LOCK_MS = 180_000;

function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name === 'dist' || entry.name === 'node_modules' || entry.name.startsWith('.')) continue;
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestSource(path) : statSync(path).mtimeMs);
  }
  return newest;
}

export function webBuildIsCurrent(): boolean {
  return existsSync(INDEX) && statSync(INDEX).mtimeMs >= newestSource(WEB_DIR);
}

async function acquire(): Promise<void> {
  const deadline = Date.now() + STALE_LOCK_MS;
  for (;;) {
    try {
      mkdirSync(LOCK);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    // A holder that died (killed test run) leaves the directory behind: take it over once it is old.
    try {
      if (Date.now() - statSync(LOCK).mtimeMs > STALE_LOCK_MS) rmSync(LOCK, { recursive: true, force: true });
    } catch {
      // removed by its holder meanwhile
    }
    if (Date.now() > deadline) throw new Error(`web build lock ${LOCK} still held after ${STALE_LOCK_MS} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function ensureWebBuilt(): Promise<void> {
  if (webBuildIsCurrent()) return;
  await acquire();
  try {
    // Another worker may have built it while this one waited.
    if (webBuildIsCurrent()) return;
    const { build } = await import('vite');
    await build({ root: WEB_DIR, logLevel: 'silent' });
  } finally {
    rmSync(LOCK, { recursive: true, force: true });
  }
}
