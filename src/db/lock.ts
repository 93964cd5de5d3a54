/**
 * An exclusive lock on a data directory. PGlite does not lock its directory and
 * two processes writing one corrupt it, so every process that opens a data dir
 * holds `<dataDir>/faultline.lock` first. The file also tells a CLI where the
 * running bridge's HTTP API listens.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, unlinkSync } from 'node:fs';
import { link, mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { FaultlineError } from '../errors/catalogue.js';
import type { Logger } from '../log/logger.js';
import { Mutex } from './mutex.js';

export const LOCK_FILE = 'faultline.lock';

export interface LockInfo {
  pid: number;
  startedAt: string;
  httpUrl?: string;
  /** Unique per acquisition, so a holder never mistakes another process's lock (same pid after a restart) for its own. */
  token?: string;
}

export interface DataDirLock {
  readonly path: string;
  release(): Promise<void>;
}

/** Locks this process holds, by absolute lock-file path, with the token written into each. */
const held = new Map<string, string>();
let exitHookInstalled = false;
/**
 * Acquisitions within this process run one at a time: "the lock names our pid but we do not hold
 * it" means a previous incarnation only if no acquisition of ours is half done.
 */
const acquiring = new Mutex();

function lockPath(dataDir: string): string {
  return join(resolve(dataDir), LOCK_FILE);
}

function parseLock(raw: string): LockInfo | null {
  try {
    const value: unknown = JSON.parse(raw);
    if (typeof value !== 'object' || value === null) return null;
    const v = value as Record<string, unknown>;
    if (typeof v.pid !== 'number' || !Number.isInteger(v.pid) || v.pid <= 0) return null;
    if (typeof v.startedAt !== 'string') return null;
    return {
      pid: v.pid,
      startedAt: v.startedAt,
      ...(typeof v.httpUrl === 'string' ? { httpUrl: v.httpUrl } : {}),
      ...(typeof v.token === 'string' ? { token: v.token } : {}),
    };
  } catch {
    return null;
  }
}

async function readRaw(path: string): Promise<string | null> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** The lock of whoever holds dataDir, or null when nobody does (or the file is unreadable). */
export async function readLock(dataDir: string): Promise<LockInfo | null> {
  const raw = await readRaw(lockPath(dataDir));
  return raw === null ? null : parseLock(raw);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to another user, so it is alive.
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/**
 * Writes content to a private temp file and hard-links it to `path`. link() fails with EEXIST
 * exactly like an O_EXCL create, but the lock appears with its whole content at once, so a
 * concurrent reader never sees a half-written (empty) lock and mistakes it for a stale one.
 */
async function createExclusive(path: string, content: string): Promise<boolean> {
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(tmp, content, { mode: 0o644 });
  try {
    await link(tmp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

/**
 * Moves a stale lock aside. Two processes may both judge the same lock stale; rename is atomic,
 * and whoever finds that the file it moved is not the stale one it read (the other process has
 * already replaced it) puts it back, so only one of them goes on to create the new lock.
 */
async function removeStale(path: string, staleRaw: string): Promise<void> {
  const aside = `${path}.stale.${process.pid}.${randomBytes(6).toString('hex')}`;
  try {
    await rename(path, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  const moved = await readRaw(aside);
  if (moved !== staleRaw) {
    await link(aside, path).catch(() => undefined);
  }
  await unlink(aside).catch(() => undefined);
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // A process that exits without closing its database should not leave a lock the next start must
  // judge stale; 'exit' handlers must be synchronous.
  process.on('exit', () => {
    for (const [path, token] of held) {
      try {
        const info = parseLock(readFileSync(path, 'utf8'));
        if (info?.token === token) unlinkSync(path);
      } catch {
        // Best effort: a leftover lock is detected as stale at the next start.
      }
    }
  });
}

/**
 * Takes the exclusive lock on dataDir (creating the directory), or throws FL_DATA_DIR_LOCKED if a
 * live process holds it. A lock left by a dead process is taken over with a warning.
 */
export function acquireDataDirLock(dataDir: string, log?: Logger): Promise<DataDirLock> {
  return acquiring.run(() => acquire(dataDir, log));
}

async function acquire(dataDir: string, log: Logger | undefined): Promise<DataDirLock> {
  const dir = resolve(dataDir);
  await mkdir(dir, { recursive: true });
  const path = lockPath(dir);
  const token = randomBytes(12).toString('base64url');
  const mine: LockInfo = { pid: process.pid, startedAt: new Date().toISOString(), token };
  const content = `${JSON.stringify(mine)}\n`;

  for (let attempt = 0; attempt < 5; attempt++) {
    if (await createExclusive(path, content)) {
      held.set(path, token);
      installExitHook();
      let released = false;
      return {
        path,
        async release() {
          if (released) return;
          released = true;
          held.delete(path);
          const current = parseLock((await readRaw(path)) ?? '');
          // Never delete a lock that is no longer ours (someone judged ours stale and replaced it).
          if (current?.token === token) await unlink(path).catch(() => undefined);
        },
      };
    }
    const raw = await readRaw(path);
    if (raw === null) continue; // released between our attempt and the read: try again
    const info = parseLock(raw);
    if (info === null) {
      log?.warn({ lockFile: path }, 'data dir lock file is unreadable; taking it over');
      await removeStale(path, raw);
      continue;
    }
    const heldHere = held.has(path);
    // Our own pid in a lock we do not hold is a previous incarnation of this process: containers
    // often restart the bridge as the same pid (1), which must not lock it out of its own data.
    const alive = info.pid === process.pid ? heldHere : isAlive(info.pid);
    if (alive) {
      throw new FaultlineError(
        'FL_DATA_DIR_LOCKED',
        `data dir ${dir} is in use by pid ${info.pid} (started ${info.startedAt}); stop it or use another FAULTLINE_DATA_DIR`,
        { dataDir: dir, pid: info.pid, startedAt: info.startedAt, lockFile: path },
      );
    }
    log?.warn(
      { lockFile: path, stalePid: info.pid, staleStartedAt: info.startedAt },
      'taking over a stale data dir lock (its process is gone)',
    );
    await removeStale(path, raw);
  }
  throw new FaultlineError(
    'FL_DATA_DIR_LOCKED',
    `data dir ${dir}: could not take the lock ${path}; another process keeps replacing it`,
    { dataDir: dir, lockFile: path },
  );
}

/** Adds information (the HTTP URL once the server listens) to a lock this process holds. */
export async function updateLock(dataDir: string, info: { httpUrl?: string }): Promise<LockInfo> {
  const path = lockPath(dataDir);
  const token = held.get(path);
  const current = parseLock((await readRaw(path)) ?? '');
  if (token === undefined || current === null || current.token !== token) {
    throw new FaultlineError('FL_INTERNAL', `this process does not hold the data dir lock ${path}`);
  }
  const next: LockInfo = { ...current, ...info };
  // Write then rename, so readers see the old or the new lock, never a truncated one.
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(tmp, `${JSON.stringify(next)}\n`, { mode: 0o644 });
  await rename(tmp, path);
  return next;
}
