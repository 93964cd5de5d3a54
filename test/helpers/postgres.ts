/**
 * A throwaway PostgreSQL server for tests: initdb into a temp dir, start it on a
 * free loopback port with fsync off, stop it by PID and delete the dir.
 *
 * PostgreSQL refuses to run as root, and CI runs as root (on a fresh Debian
 * where .ci/run has just apt-installed postgresql). As root, the server runs as
 * the `postgres` user the Debian package creates (else `nobody`): the temp dir
 * is chown'ed to that user and the processes are spawned with its uid/gid
 * directly (no su/runuser wrapper), so the PID we hold is the postmaster's and
 * SIGINT reaches it. As any other user, it simply runs as that user.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  accessSync,
  chownSync,
  constants,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { freePort } from './net.js';

export interface PostgresServer {
  /** postgres:// URL of an empty database on the server. */
  url: string;
  /** URL of the server's `postgres` maintenance database (for CREATE/DROP DATABASE). */
  adminUrl: string;
  pid: number;
  stop(): Promise<void>;
  /** Stops the server (fast shutdown) but keeps its data, for outage tests. */
  halt(): Promise<void>;
  /** Starts it again on the same port and data after halt(). */
  resume(): Promise<void>;
}

interface RunAs {
  uid: number;
  gid: number;
  name: string;
}

/** The bin dir holding initdb and postgres: FAULTLINE_PG_BINDIR, Debian's newest, pg_config, or PATH. */
export function postgresBinDir(): string {
  const fromEnv = process.env.FAULTLINE_PG_BINDIR;
  if (fromEnv) return fromEnv;
  const debian = '/usr/lib/postgresql';
  if (existsSync(debian)) {
    const versions = readdirSync(debian)
      .filter((v) => existsSync(join(debian, v, 'bin', 'initdb')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0]) return join(debian, versions[0], 'bin');
  }
  try {
    return execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim();
  } catch {
    try {
      return dirname(execFileSync('which', ['initdb'], { encoding: 'utf8' }).trim());
    } catch {
      throw new Error(
        'PostgreSQL is not installed: no /usr/lib/postgresql/*/bin/initdb, pg_config or initdb on PATH ' +
          '(run `bash scripts/install-system-deps.sh`, or set FAULTLINE_PG_BINDIR)',
      );
    }
  }
}

function userIds(name: string): RunAs | null {
  try {
    const uid = Number(
      execFileSync('id', ['-u', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }),
    );
    const gid = Number(
      execFileSync('id', ['-g', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }),
    );
    return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid, name } : null;
  } catch {
    return null;
  }
}

/** Whom to run the server as: ourselves, unless we are root (FAULTLINE_PG_RUN_AS picks the user then). */
function runAs(): RunAs | null {
  if (process.getuid?.() !== 0) return null;
  const chosen = process.env.FAULTLINE_PG_RUN_AS;
  if (chosen) {
    const user = userIds(chosen);
    if (!user) throw new Error(`FAULTLINE_PG_RUN_AS=${chosen}: no such user`);
    return user;
  }
  const user = userIds('postgres') ?? userIds('nobody');
  if (!user)
    throw new Error(
      'running as root, and there is neither a postgres nor a nobody user to run PostgreSQL as',
    );
  return user;
}

/** True if every ancestor of dir lets "others" through, so a different user can reach it. */
function traversableByOthers(dir: string): boolean {
  for (let d = dir; ; d = dirname(d)) {
    if ((statSync(d).mode & 0o001) === 0) return false;
    if (dirname(d) === d) return true;
  }
}

function makeBaseDir(user: RunAs | null): string {
  // As root, TMPDIR may be e.g. /root/tmp, which the postgres user cannot enter; /tmp always works.
  const parent = user && !traversableByOthers(tmpdir()) ? '/tmp' : tmpdir();
  const base = mkdtempSync(join(parent, 'faultline-pg-'));
  if (user) chownSync(base, user.uid, user.gid);
  return base;
}

function spawnAs(user: RunAs | null, command: string, args: string[], cwd: string): ChildProcess {
  return spawn(command, args, {
    cwd,
    // A fixed C locale: initdb on a fresh machine otherwise depends on whatever locales exist.
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', LC_ALL: 'C', HOME: cwd, TZ: 'UTC' },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(user ? { uid: user.uid, gid: user.gid } : {}),
  });
}

function collect(child: ChildProcess): () => string {
  let out = '';
  const add = (d: Buffer) => {
    out += d.toString();
    if (out.length > 64_000) out = out.slice(-32_000);
  };
  child.stdout?.on('data', add);
  child.stderr?.on('data', add);
  return () => out;
}

function exitOf(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
    else child.once('exit', (code) => resolve(code));
  });
}

async function initdb(bin: string, user: RunAs | null, base: string, dataDir: string): Promise<void> {
  const child = spawnAs(
    user,
    join(bin, 'initdb'),
    ['-D', dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync'],
    base,
  );
  const output = collect(child);
  const code = await exitOf(child);
  if (code !== 0)
    throw new Error(`initdb failed (exit ${code}${user ? `, as ${user.name}` : ''}):\n${output()}`);
}

/** Polls until the server accepts a connection; fails at once if the process dies. */
async function waitReady(
  child: ChildProcess,
  port: number,
  output: () => string,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `postgres exited (${child.exitCode ?? child.signalCode}) before accepting connections:\n${output()}`,
      );
    }
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
    try {
      await client.connect();
      await client.query('SELECT 1');
      await client.end();
      return;
    } catch (err) {
      last = err;
      await client.end().catch(() => undefined);
    }
    if (Date.now() > deadline) {
      throw new Error(
        `postgres did not accept connections within ${timeoutMs} ms: ${String(last)}\n${output()}`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = exitOf(child);
  // SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions, disconnect, exit.
  process.kill(child.pid!, 'SIGINT');
  const timer = setTimeout(() => {
    if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGKILL');
  }, 10_000);
  await exited;
  clearTimeout(timer);
}

export async function startPostgres(): Promise<PostgresServer> {
  const bin = postgresBinDir();
  accessSync(join(bin, 'postgres'), constants.X_OK);
  const user = runAs();
  const base = makeBaseDir(user);
  const dataDir = join(base, 'data');
  const socketDir = join(base, 'sock');
  mkdirSync(socketDir);
  if (user) chownSync(socketDir, user.uid, user.gid);
  try {
    await initdb(bin, user, base, dataDir);
    // freePort() can race with another process taking the port; postgres then exits at once
    // ("could not bind"), and another port is tried.
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const child = spawnAs(
        user,
        join(bin, 'postgres'),
        [
          '-D',
          dataDir,
          '-p',
          String(port),
          '-k',
          socketDir,
          '-h',
          '127.0.0.1',
          '-F',
          '-c',
          'max_connections=200',
        ],
        base,
      );
      const output = collect(child);
      try {
        await waitReady(child, port, output);
      } catch (err) {
        await stopChild(child);
        if (attempt < 3 && /could not bind|Address already in use/.test(output())) continue;
        throw err;
      }
      const adminUrl = `postgres://postgres@127.0.0.1:${port}/postgres`;
      const admin = new pg.Client({ connectionString: adminUrl });
      await admin.connect();
      await admin.query('CREATE DATABASE faultline_test');
      await admin.end();
      let stopped = false;
      let current = child;
      const args = [
        '-D',
        dataDir,
        '-p',
        String(port),
        '-k',
        socketDir,
        '-h',
        '127.0.0.1',
        '-F',
        '-c',
        'max_connections=200',
      ];
      return {
        url: `postgres://postgres@127.0.0.1:${port}/faultline_test`,
        adminUrl,
        get pid() {
          return current.pid!;
        },
        async stop() {
          if (stopped) return;
          stopped = true;
          await stopChild(current);
          rmSync(base, { recursive: true, force: true });
        },
        async halt() {
          await stopChild(current);
        },
        async resume() {
          current = spawnAs(user, join(bin, 'postgres'), args, base);
          await waitReady(current, port, collect(current));
        },
      };
    }
  } catch (err) {
    rmSync(base, { recursive: true, force: true });
    throw err;
  }
}
