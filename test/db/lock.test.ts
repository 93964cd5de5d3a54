import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { openDb } from '../../src/db/db.js';
import { acquireDataDirLock, LOCK_FILE, readLock, updateLock } from '../../src/db/lock.js';
import type { Logger } from '../../src/log/logger.js';
import { pgliteBackend } from '../helpers/db.js';
import { until } from '../helpers/net.js';
import { tempDir } from '../helpers/process.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

function dir(): string {
  const d = tempDir('lock');
  cleanups.push(() => d.remove());
  return d.path;
}

function capturingLogger(): { log: Logger; lines: () => Array<Record<string, unknown>> } {
  const out: string[] = [];
  const log: Logger = pino({ level: 'warn' }, { write: (s: string) => out.push(s) });
  return { log, lines: () => out.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
}

/** The pid of a process that has already exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await exited(child);
  return child.pid!;
}

/** A process that stays alive until killed. */
function liveProcess(): ChildProcess {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  cleanups.push(async () => {
    child.kill('SIGKILL');
    await exited(child);
  });
  return child;
}

function writeLock(dataDir: string, content: unknown): void {
  writeFileSync(join(dataDir, LOCK_FILE), typeof content === 'string' ? content : JSON.stringify(content));
}

describe('data dir lock', () => {
  it('creates the lock with pid and start time, and removes it on release', async () => {
    const d = dir();
    const lock = await acquireDataDirLock(d);
    const info = await readLock(d);
    expect(info).toMatchObject({ pid: process.pid });
    expect(Number.isNaN(Date.parse(info!.startedAt))).toBe(false);
    await lock.release();
    expect(existsSync(join(d, LOCK_FILE))).toBe(false);
    expect(await readLock(d)).toBeNull();
  });

  it('creates a missing data dir', async () => {
    const d = join(dir(), 'not', 'yet');
    const lock = await acquireDataDirLock(d);
    cleanups.push(() => lock.release());
    expect(existsSync(join(d, LOCK_FILE))).toBe(true);
  });

  it('refuses a second holder in the same process', async () => {
    const d = dir();
    const lock = await acquireDataDirLock(d);
    cleanups.push(() => lock.release());
    await expect(acquireDataDirLock(d)).rejects.toMatchObject({
      code: 'FL_DATA_DIR_LOCKED',
      message: expect.stringContaining(`in use by pid ${process.pid}`),
    });
  });

  it('gives the lock to exactly one of two simultaneous callers', async () => {
    const d = dir();
    const results = await Promise.allSettled([acquireDataDirLock(d), acquireDataDirLock(d)]);
    const won = results.filter((r) => r.status === 'fulfilled');
    expect(won).toHaveLength(1);
    const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(lost.reason).toMatchObject({ code: 'FL_DATA_DIR_LOCKED' });
    await (won[0] as PromiseFulfilledResult<{ release(): Promise<void> }>).value.release();
  });

  it('refuses a lock held by another live process, naming it', async () => {
    const d = dir();
    const other = liveProcess();
    writeLock(d, { pid: other.pid, startedAt: '2025-01-01T00:00:00.000Z' });
    await expect(acquireDataDirLock(d)).rejects.toMatchObject({
      code: 'FL_DATA_DIR_LOCKED',
      message: `data dir ${d} is in use by pid ${other.pid} (started 2025-01-01T00:00:00.000Z); stop it or use another FAULTLINE_DATA_DIR`,
      details: { pid: other.pid },
    });
    // Refusing must not disturb the holder's lock.
    expect(await readLock(d)).toMatchObject({ pid: other.pid });
  });

  it('takes over a stale lock (its process is gone) with a warning', async () => {
    const d = dir();
    const pid = await deadPid();
    writeLock(d, { pid, startedAt: '2025-01-01T00:00:00.000Z', httpUrl: 'http://127.0.0.1:1' });
    const { log, lines } = capturingLogger();
    const lock = await acquireDataDirLock(d, log);
    cleanups.push(() => lock.release());
    const info = await readLock(d);
    expect(info?.pid).toBe(process.pid);
    expect(info?.httpUrl).toBeUndefined();
    expect(lines()).toEqual([expect.objectContaining({ level: 40, stalePid: pid })]);
  });

  it('takes over a lock naming our own pid that this process does not hold (a restarted container)', async () => {
    const d = dir();
    writeLock(d, { pid: process.pid, startedAt: '2020-01-01T00:00:00.000Z' });
    const lock = await acquireDataDirLock(d);
    cleanups.push(() => lock.release());
    expect((await readLock(d))?.startedAt).not.toBe('2020-01-01T00:00:00.000Z');
  });

  it('takes over an unreadable lock file', async () => {
    const d = dir();
    writeLock(d, '');
    const lock = await acquireDataDirLock(d);
    cleanups.push(() => lock.release());
    expect((await readLock(d))?.pid).toBe(process.pid);
  });

  it('gives a stale lock to exactly one of several processes racing for it', async () => {
    const d = dir();
    writeLock(d, { pid: await deadPid(), startedAt: '2025-01-01T00:00:00.000Z' });
    const fixture = join(import.meta.dirname, 'fixtures', 'lock-child.ts');
    const children = Array.from({ length: 4 }, () => {
      const child = spawn(process.execPath, ['--import', 'tsx', fixture, d], {
        cwd: join(import.meta.dirname, '..', '..'),
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString();
      });
      child.stderr.on('data', (b: Buffer) => {
        out += b.toString();
      });
      cleanups.push(async () => {
        child.kill('SIGKILL');
        await exited(child);
      });
      return { child, out: () => out };
    });
    const outcomes = await until(
      'every child to report',
      () => {
        const all = children.map((c) => c.out());
        return all.every((o) => /acquired|refused/.test(o)) && all;
      },
      20_000,
    );
    expect(outcomes.filter((o) => o.startsWith('acquired'))).toHaveLength(1);
    expect(outcomes.filter((o) => o.startsWith('refused FL_DATA_DIR_LOCKED'))).toHaveLength(3);
    for (const c of children) c.child.stdin.end();
    await Promise.all(children.map((c) => exited(c.child)));
    expect(await readLock(d)).toBeNull();
  });

  it('records the HTTP URL for a CLI to find', async () => {
    const d = dir();
    const lock = await acquireDataDirLock(d);
    cleanups.push(() => lock.release());
    await updateLock(d, { httpUrl: 'http://127.0.0.1:8080' });
    expect(await readLock(d)).toMatchObject({ pid: process.pid, httpUrl: 'http://127.0.0.1:8080' });
  });

  it('refuses to update a lock this process does not hold', async () => {
    const d = dir();
    const other = liveProcess();
    writeLock(d, { pid: other.pid, startedAt: '2025-01-01T00:00:00.000Z' });
    await expect(updateLock(d, { httpUrl: 'http://x' })).rejects.toMatchObject({ code: 'FL_INTERNAL' });
    expect(JSON.parse(readFileSync(join(d, LOCK_FILE), 'utf8'))).not.toHaveProperty('httpUrl');
  });

  it('does not delete a lock that was replaced by someone else', async () => {
    const d = dir();
    const lock = await acquireDataDirLock(d);
    const other = liveProcess();
    writeLock(d, { pid: other.pid, startedAt: '2025-01-01T00:00:00.000Z' });
    await lock.release();
    expect(await readLock(d)).toMatchObject({ pid: other.pid });
  });
});

describe('openDb on PGlite', () => {
  it('fails fast when the data dir is already open, and works again once closed', async () => {
    const t = await pgliteBackend.open();
    cleanups.push(() => t.dispose());
    const d = t.options.dataDir;
    await expect(openDb(t.options)).rejects.toMatchObject({ code: 'FL_DATA_DIR_LOCKED' });
    // The refused open did not disturb the first.
    await t.db.query(`INSERT INTO devices (id, model, secret_hash) VALUES ('d1', 'm', 'h')`);
    await t.db.close();
    expect(existsSync(join(d, LOCK_FILE))).toBe(false);
    const second = await t.openAgain();
    expect((await second.query('SELECT id FROM devices')).rows).toEqual([{ id: 'd1' }]);
    expect(await readLock(d)).toMatchObject({ pid: process.pid });
  });
});
