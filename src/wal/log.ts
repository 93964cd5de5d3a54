/**
 * Write-ahead log: an MQTT QoS 1 message is acknowledged only once its record is
 * here and fdatasynced, so the log is the durability boundary of the bridge.
 *
 * Appends are group-committed: everything that arrives while the previous group
 * is being synced (or within groupCommitMs of the group's first append) becomes
 * one buffer, one write and one fdatasync. Only one group is in flight at a time,
 * which keeps LSN order equal to file order without locks.
 *
 * Consumers read through named cursors whose positions are persisted lazily;
 * losing the last few commits in a crash means re-delivery, never loss. A segment
 * is deleted only once every cursor's persisted position is past it.
 */
import { EventEmitter } from 'node:events';
import {
  type FileHandle,
  mkdir,
  open,
  readdir,
  readFile,
  realpath,
  rename,
  rm,
  unlink,
} from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { decodeRecord, encodeRecord, HEADER_BYTES, parseSegmentName, segmentName } from './format.js';
import { INDEX_STRIDE, newSegment, readFully, type Segment, seek, walk } from './segment.js';

export interface WalOptions {
  /** Created if missing (recursive). */
  dir: string;
  /** Roll to a new segment file past this size; default 64 MiB. */
  segmentBytes?: number;
  /** How long to gather more appends before fsync; default 2; 0 syncs as soon as the previous sync completes. */
  groupCommitMs?: number;
  /** Bound on bytes retained on disk; past it `full` is true. Default 1 GiB. */
  maxBytes?: number;
  /** Default true; false only for benchmarks. */
  fsync?: boolean;
}

export interface WalRecord {
  lsn: number;
  payload: Buffer;
}

export interface WalCursor {
  readonly name: string;
  /** Last LSN this consumer has fully processed. */
  readonly position: number;
  /** Advances the position (lower values are ignored); persisted within ~50 ms, on flush() or on close. */
  commit(lsn: number): void;
  /** Persists the position now. */
  flush(): Promise<void>;
}

export interface WalCommitInfo {
  firstLsn: number;
  lastLsn: number;
  records: number;
  bytes: number;
  /** From the group's first append to durable: the worst commit latency within the group. */
  durableMs: number;
  /** Of durableMs, the time spent in write and fdatasync (the rest is gathering and waiting for the previous group). */
  ioMs: number;
}

export interface WalStats {
  lastLsn: number;
  bytes: number;
  segments: number;
  cursors: Record<string, number>;
  /** fdatasync calls on segments since open. */
  syncs: number;
  /** Group writes since open. */
  groups: number;
  /** Records made durable since open. */
  appends: number;
}

export interface WalRecovery {
  /** Bytes cut from the newest segment because its last record was torn. */
  truncatedBytes: number;
  /** Why the tail was cut, when it was. */
  reason?: string;
}

export interface WalEvents {
  /** Emitted when `full` changes. */
  full: [full: boolean];
  /** Emitted after each durable group. */
  commit: [info: WalCommitInfo];
  /** A background cursor persist or segment deletion failed; it is retried on the next commit or flush. */
  backgroundError: [err: Error];
}

export class WalClosedError extends Error {
  constructor(dir: string) {
    super(`write-ahead log ${dir} is closed`);
    this.name = 'WalClosedError';
  }
}

export class WalCorruptionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WalCorruptionError';
  }
}

const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024;
const DEFAULT_MAX_BYTES = 1024 * 1024 * 1024;
const DEFAULT_GROUP_COMMIT_MS = 2;
// Caps one write so a backlog after a slow sync does not become one huge allocation or overshoot a segment.
const MAX_GROUP_BYTES = 4 * 1024 * 1024;
/** Recently durable records kept in memory for read(); per-record overhead counted roughly. */
const TAIL_BYTES = 8 * 1024 * 1024;
const TAIL_OVERHEAD = 64;
const CURSOR_PERSIST_MS = 50;
const CURSOR_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

// Two writers on one directory would interleave records; this catches it within a process (across
// processes it is the deployment's job: one bridge per data directory).
const openDirs = new Set<string>();

interface Waiter {
  count: number;
  settle: (err?: Error) => void;
}

class Cursor implements WalCursor {
  constructor(
    readonly name: string,
    public position: number,
    /** What the cursor file holds; -1 until a new cursor is first written. */
    public persisted: number,
    private readonly onCommit: (cursor: Cursor, lsn: number) => void,
    private readonly onFlush: () => Promise<void>,
  ) {}

  commit(lsn: number): void {
    this.onCommit(this, lsn);
  }

  flush(): Promise<void> {
    return this.onFlush();
  }
}

export class WriteAheadLog extends EventEmitter<WalEvents> {
  private readonly cursorsDir: string;
  private readonly cursors = new Map<string, Cursor>();

  private durableLsn: number;
  private assignedLsn: number;
  private bytesOnDisk: number;
  private isFull: boolean;

  /**
   * The records made durable most recently, oldest first (tail[0] has LSN tailFirst), so
   * consumers that keep up read them from memory: one open/read/close and one copy per
   * read() was the largest syscall cost on the ingest path. Bounded by TAIL_BYTES.
   */
  private tail: Buffer[] = [];
  private tailFirst = 1;
  private tailBytes = 0;
  private pendingPayloads: Buffer[] = [];
  private pendingWaiters: Waiter[] = [];
  private pendingBytes = 0;
  private groupStart = 0;
  private flushing = false;
  private flushQueued = false;
  private groupTimer: NodeJS.Timeout | undefined;
  private idleWaiters: Array<() => void> = [];

  private cursorTimer: NodeJS.Timeout | undefined;
  private persistChain: Promise<void> = Promise.resolve();
  private gcChain: Promise<void> = Promise.resolve();

  private failure: Error | undefined;
  private closing = false;
  private shut = false;
  private closePromise: Promise<void> | undefined;

  private syncCount = 0;
  private groupCount = 0;
  private appendCount = 0;

  private constructor(
    private readonly dir: string,
    private readonly segmentBytes: number,
    private readonly groupCommitMs: number,
    private readonly maxBytes: number,
    private readonly fsyncEnabled: boolean,
    private readonly segments: Segment[],
    private file: FileHandle,
    cursorPositions: Map<string, number>,
    /** What open() had to repair, for the caller to log. */
    readonly recovery: WalRecovery,
  ) {
    super();
    this.cursorsDir = join(dir, 'cursors');
    const active = segments[segments.length - 1]!;
    this.durableLsn = active.lastLsn;
    this.assignedLsn = active.lastLsn;
    this.bytesOnDisk = segments.reduce((sum, s) => sum + s.size, 0);
    this.isFull = this.bytesOnDisk >= maxBytes;
    for (const [name, position] of cursorPositions) {
      // A cursor past the log's end can only follow a tail lost without fsync; it must not skip the LSNs reused next.
      const clamped = Math.min(position, this.durableLsn);
      this.cursors.set(name, this.makeCursor(name, clamped, clamped === position ? position : -1));
    }
  }

  static async open(options: WalOptions): Promise<WriteAheadLog> {
    const segmentBytes = positive('segmentBytes', options.segmentBytes ?? DEFAULT_SEGMENT_BYTES);
    const maxBytes = positive('maxBytes', options.maxBytes ?? DEFAULT_MAX_BYTES);
    const groupCommitMs = options.groupCommitMs ?? DEFAULT_GROUP_COMMIT_MS;
    if (!(groupCommitMs >= 0) || !Number.isFinite(groupCommitMs)) {
      throw new RangeError(`groupCommitMs must be a finite number >= 0, got ${groupCommitMs}`);
    }
    const fsyncEnabled = options.fsync ?? true;

    await mkdir(join(options.dir, 'cursors'), { recursive: true });
    const dir = await realpath(options.dir);
    if (openDirs.has(dir)) throw new Error(`write-ahead log ${dir} is already open in this process`);
    openDirs.add(dir);
    try {
      const cursorPositions = await loadCursors(join(dir, 'cursors'));
      const { segments, recovery } = await recoverSegments(dir, cursorPositions, fsyncEnabled);
      const file = await open(segments[segments.length - 1]!.path, 'r+');
      const log = new WriteAheadLog(
        dir,
        segmentBytes,
        groupCommitMs,
        maxBytes,
        fsyncEnabled,
        segments,
        file,
        cursorPositions,
        recovery,
      );
      // A clamped cursor must reach disk before it lets anything be deleted.
      for (const cursor of log.cursors.values())
        if (cursor.persisted !== cursor.position) log.schedulePersist();
      log.collect();
      await log.gcChain;
      return log;
    } catch (err) {
      openDirs.delete(dir);
      throw err;
    }
  }

  /** Highest durable LSN (0 when empty). */
  get lastLsn(): number {
    return this.durableLsn;
  }

  /** Bytes held in segment files. */
  get bytes(): number {
    return this.bytesOnDisk;
  }

  /** bytes >= maxBytes: callers must stop accepting until consumers catch up. Appends still work. */
  get full(): boolean {
    return this.isFull;
  }

  /** Resolves with the record's LSN once it is durable. */
  append(payload: Buffer): Promise<number> {
    const refusal = this.refusal();
    if (refusal) return Promise.reject(refusal);
    const lsn = ++this.assignedLsn;
    return new Promise<number>((resolve, reject) => {
      this.enqueue(payload, {
        count: 1,
        settle: (err) => (err ? reject(err) : resolve(lsn)),
      });
    });
  }

  /** Appends all payloads in one group; resolves with their LSNs once all are durable. */
  appendMany(payloads: Buffer[]): Promise<number[]> {
    const refusal = this.refusal();
    if (refusal) return Promise.reject(refusal);
    if (payloads.length === 0) return Promise.resolve([]);
    const lsns = payloads.map(() => ++this.assignedLsn);
    return new Promise<number[]>((resolve, reject) => {
      const waiter: Waiter = { count: payloads.length, settle: (err) => (err ? reject(err) : resolve(lsns)) };
      if (this.pendingWaiters.length === 0) this.groupStart = performance.now();
      for (const payload of payloads) {
        this.pendingPayloads.push(payload);
        this.pendingBytes += HEADER_BYTES + payload.length;
      }
      this.pendingWaiters.push(waiter);
      this.schedule();
    });
  }

  /**
   * The named consumer's durable position. A new cursor starts just before the oldest retained
   * record (0 on a log that never deleted a segment) and holds back segment deletion at once.
   */
  cursor(name: string): WalCursor {
    if (!CURSOR_NAME.test(name)) {
      throw new RangeError(
        `cursor name ${JSON.stringify(name)} must match ${CURSOR_NAME} (it is a file name)`,
      );
    }
    const existing = this.cursors.get(name);
    if (existing) return existing;
    if (this.closing) throw new WalClosedError(this.dir);
    const cursor = this.makeCursor(name, Math.max(0, this.segments[0]!.firstLsn - 1), -1);
    this.cursors.set(name, cursor);
    this.schedulePersist();
    return cursor;
  }

  /** Forgets a consumer for good, so that it stops holding back segment deletion. */
  async dropCursor(name: string): Promise<void> {
    if (!this.cursors.delete(name)) return;
    // Serialised with persists, so a persist already under way cannot write the file back afterwards.
    const run = this.persistChain.then(async () => {
      await rm(join(this.cursorsDir, name), { force: true });
      if (this.fsyncEnabled) await syncDir(this.cursorsDir);
      this.collect();
      await this.gcChain;
    });
    this.persistChain = run.catch(() => undefined);
    await run;
  }

  /** Records with lsn > fromLsnExclusive, in order, at most maxRecords, read from disk. */
  async read(fromLsnExclusive: number, maxRecords: number): Promise<WalRecord[]> {
    if (this.shut) throw new WalClosedError(this.dir);
    if (!Number.isSafeInteger(fromLsnExclusive) || fromLsnExclusive < 0) {
      throw new RangeError(`fromLsnExclusive must be an integer >= 0, got ${fromLsnExclusive}`);
    }
    if (!Number.isSafeInteger(maxRecords) || maxRecords < 1) {
      throw new RangeError(`maxRecords must be an integer >= 1, got ${maxRecords}`);
    }
    const records: WalRecord[] = [];
    let next = fromLsnExclusive + 1;
    while (records.length < maxRecords && next <= this.durableLsn) {
      const tailEnd = this.tailFirst + this.tail.length - 1;
      if (next >= this.tailFirst && next <= tailEnd && next >= this.segments[0]!.firstLsn) {
        const last = Math.min(tailEnd, this.durableLsn, next + (maxRecords - records.length) - 1);
        for (let lsn = next; lsn <= last; lsn++)
          records.push({ lsn, payload: this.tail[lsn - this.tailFirst]! });
        next = last + 1;
        continue;
      }
      const segment = this.segmentFor(next);
      // Records before the oldest segment were consumed by every cursor and deleted.
      if (next < segment.firstLsn) next = segment.firstLsn;
      // size and lastLsn change together after each sync, so this pair is a consistent durable prefix.
      const limit = segment.size;
      const start = seek(segment, next);
      let file: FileHandle;
      try {
        file = await open(segment.path, 'r');
      } catch (err) {
        // Deleted by GC since segmentFor(); it has left the list, so the next turn moves past it.
        if (isNotFound(err) && !this.segments.includes(segment)) continue;
        throw err;
      }
      try {
        const from = next;
        const end = await walk(
          file,
          start.offset,
          start.lsn,
          limit,
          (lsn, chunk, payloadStart, recordEnd) => {
            if (lsn < from) return true;
            records.push({ lsn, payload: Buffer.from(chunk.subarray(payloadStart, recordEnd)) });
            return records.length < maxRecords;
          },
        );
        if (end.bad) {
          throw new WalCorruptionError(
            `${segment.path}: ${end.bad} at byte ${end.offset} (lsn ${end.nextLsn})`,
          );
        }
        next = end.nextLsn;
      } finally {
        await file.close();
      }
    }
    return records;
  }

  /** Waits for pending appends to be durable and cursor positions persisted, then closes files. */
  close(): Promise<void> {
    this.closePromise ??= this.shutdown();
    return this.closePromise;
  }

  stats(): WalStats {
    const cursors: Record<string, number> = {};
    for (const [name, cursor] of this.cursors) cursors[name] = cursor.position;
    return {
      lastLsn: this.durableLsn,
      bytes: this.bytesOnDisk,
      segments: this.segments.length,
      cursors,
      syncs: this.syncCount,
      groups: this.groupCount,
      appends: this.appendCount,
    };
  }

  private refusal(): Error | undefined {
    if (this.failure) return this.failure;
    if (this.closing) return new WalClosedError(this.dir);
    return undefined;
  }

  private enqueue(payload: Buffer, waiter: Waiter): void {
    if (this.pendingWaiters.length === 0) this.groupStart = performance.now();
    this.pendingPayloads.push(payload);
    this.pendingWaiters.push(waiter);
    this.pendingBytes += HEADER_BYTES + payload.length;
    this.schedule();
  }

  private schedule(): void {
    if (this.flushing || this.flushQueued || this.pendingWaiters.length === 0) return;
    this.flushQueued = true;
    const delay = this.closing ? 0 : this.groupStart + this.groupCommitMs - performance.now();
    // setImmediate rather than a microtask so that appends made in the same turn join the group.
    if (delay > 0) this.groupTimer = setTimeout(this.runFlush, delay);
    else setImmediate(this.runFlush);
  }

  private readonly runFlush = (): void => {
    this.flushQueued = false;
    this.groupTimer = undefined;
    void this.flushGroup();
  };

  private takeGroup(): { payloads: Buffer[]; waiters: Waiter[]; bytes: number } {
    if (this.pendingBytes <= MAX_GROUP_BYTES) {
      const group = {
        payloads: this.pendingPayloads,
        waiters: this.pendingWaiters,
        bytes: this.pendingBytes,
      };
      this.pendingPayloads = [];
      this.pendingWaiters = [];
      this.pendingBytes = 0;
      return group;
    }
    // Split on waiter boundaries: appendMany promised its payloads one group.
    let records = 0;
    let bytes = 0;
    let waiterCount = 0;
    while (waiterCount < this.pendingWaiters.length && (waiterCount === 0 || bytes < MAX_GROUP_BYTES)) {
      const count = this.pendingWaiters[waiterCount]!.count;
      for (let i = records; i < records + count; i++) bytes += HEADER_BYTES + this.pendingPayloads[i]!.length;
      records += count;
      waiterCount++;
    }
    this.pendingBytes -= bytes;
    return {
      payloads: this.pendingPayloads.splice(0, records),
      waiters: this.pendingWaiters.splice(0, waiterCount),
      bytes,
    };
  }

  private remember(firstLsn: number, payloads: Buffer[]): void {
    if (this.tail.length === 0 || this.tailFirst + this.tail.length !== firstLsn) {
      this.tail = [];
      this.tailBytes = 0;
      this.tailFirst = firstLsn;
    }
    for (const p of payloads) {
      this.tail.push(p);
      this.tailBytes += p.length + TAIL_OVERHEAD;
    }
    if (this.tailBytes <= TAIL_BYTES) return;
    // Drop the older half at once, so trimming costs O(1) per record over time.
    let drop = 0;
    while (this.tailBytes > TAIL_BYTES / 2 && drop < this.tail.length - 1) {
      this.tailBytes -= this.tail[drop]!.length + TAIL_OVERHEAD;
      drop++;
    }
    this.tail.splice(0, drop);
    this.tailFirst += drop;
  }

  private async flushGroup(): Promise<void> {
    if (this.flushing || this.pendingWaiters.length === 0) return;
    this.flushing = true;
    const groupStart = this.groupStart;
    const ioStart = performance.now();
    const { payloads, waiters, bytes } = this.takeGroup();
    const firstLsn = this.durableLsn + 1;
    const lastLsn = this.durableLsn + payloads.length;
    let segment = this.active;
    const indexLsns: number[] = [];
    const indexOffsets: number[] = [];
    try {
      if (segment.size > 0 && segment.size + bytes > this.segmentBytes) {
        await this.roll(firstLsn);
        segment = this.active;
      }
      const base = segment.size;
      const buffer = Buffer.allocUnsafe(bytes);
      let offset = 0;
      let lastIndexed = segment.idxOff[segment.idxOff.length - 1]!;
      for (let i = 0; i < payloads.length; i++) {
        if (base + offset - lastIndexed >= INDEX_STRIDE) {
          lastIndexed = base + offset;
          indexLsns.push(firstLsn + i);
          indexOffsets.push(lastIndexed);
        }
        offset = encodeRecord(buffer, offset, firstLsn + i, payloads[i]!);
      }
      await writeFully(this.file, buffer, base);
      if (this.fsyncEnabled) {
        await this.file.datasync();
        this.syncCount++;
      }
    } catch (err) {
      this.fail(err, waiters);
      this.flushing = false;
      this.wakeIdle();
      return;
    }
    segment.size += bytes;
    segment.lastLsn = lastLsn;
    for (let i = 0; i < indexLsns.length; i++) {
      segment.idxLsn.push(indexLsns[i]!);
      segment.idxOff.push(indexOffsets[i]!);
    }
    const durableAt = performance.now();
    this.remember(firstLsn, payloads);
    this.durableLsn = lastLsn;
    this.bytesOnDisk += bytes;
    this.groupCount++;
    this.appendCount += payloads.length;
    for (const waiter of waiters) waiter.settle();
    this.flushing = false;
    if (this.pendingWaiters.length > 0) this.schedule();
    else this.wakeIdle();
    this.updateFull();
    this.emit('commit', {
      firstLsn,
      lastLsn,
      records: payloads.length,
      bytes,
      durableMs: durableAt - groupStart,
      ioMs: durableAt - ioStart,
    });
  }

  /**
   * After a failed write or fsync the file's state is unknown (and a retried fsync can report success
   * for pages the kernel already dropped), so the log refuses everything until it is reopened and rescanned.
   */
  private fail(err: unknown, waiters: Waiter[]): void {
    const failure = new Error(`write-ahead log ${this.dir} failed; reopen it to recover`, { cause: err });
    this.failure = failure;
    for (const waiter of waiters) waiter.settle(failure);
    for (const waiter of this.pendingWaiters) waiter.settle(failure);
    this.pendingWaiters = [];
    this.pendingPayloads = [];
    this.pendingBytes = 0;
  }

  private wakeIdle(): void {
    if (this.flushing || this.pendingWaiters.length > 0) return;
    const waiting = this.idleWaiters;
    this.idleWaiters = [];
    for (const wake of waiting) wake();
  }

  private drained(): Promise<void> {
    if (!this.flushing && this.pendingWaiters.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private get active(): Segment {
    return this.segments[this.segments.length - 1]!;
  }

  private async roll(firstLsn: number): Promise<void> {
    const segment = newSegment(join(this.dir, segmentName(firstLsn)), firstLsn);
    const file = await open(segment.path, 'wx');
    try {
      // Without this the new file's directory entry may not survive a crash, taking its records with it.
      if (this.fsyncEnabled) await syncDir(this.dir);
    } catch (err) {
      await file.close();
      throw err;
    }
    const previous = this.file;
    this.file = file;
    this.segments.push(segment);
    await previous.close();
    this.collect();
  }

  private segmentFor(lsn: number): Segment {
    const segments = this.segments;
    let lo = 0;
    let hi = segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (segments[mid]!.firstLsn <= lsn) lo = mid;
      else hi = mid - 1;
    }
    return segments[lo]!;
  }

  private updateFull(): void {
    const full = this.bytesOnDisk >= this.maxBytes;
    if (full === this.isFull) return;
    this.isFull = full;
    this.emit('full', full);
  }

  private makeCursor(name: string, position: number, persisted: number): Cursor {
    return new Cursor(
      name,
      position,
      persisted,
      (cursor, lsn) => this.commitCursor(cursor, lsn),
      () => this.flushCursors(),
    );
  }

  private commitCursor(cursor: Cursor, lsn: number): void {
    if (this.shut || !(lsn > cursor.position)) return;
    // A consumer can only have processed durable records; clamping keeps a bad commit from skipping future ones.
    const position = Math.min(Math.floor(lsn), this.durableLsn);
    if (position <= cursor.position) return;
    cursor.position = position;
    this.schedulePersist();
  }

  private schedulePersist(): void {
    if (this.cursorTimer || this.closing) return;
    this.cursorTimer = setTimeout(() => {
      this.cursorTimer = undefined;
      this.flushCursors().catch((err: unknown) => this.emit('backgroundError', asError(err)));
    }, CURSOR_PERSIST_MS);
    // Losing a pending cursor write only causes re-delivery, so it must not keep the process alive.
    this.cursorTimer.unref();
  }

  private flushCursors(): Promise<void> {
    if (this.shut) return Promise.reject(new WalClosedError(this.dir));
    const run = this.persistChain.then(() => this.persistDirty());
    this.persistChain = run.catch(() => undefined);
    return run;
  }

  private async persistDirty(): Promise<void> {
    const written: Array<[Cursor, number]> = [];
    for (const cursor of this.cursors.values()) {
      if (cursor.position === cursor.persisted) continue;
      const position = cursor.position;
      await writeAtomically(this.cursorsDir, cursor.name, `${position}\n`, this.fsyncEnabled);
      written.push([cursor, position]);
    }
    if (written.length > 0 && this.fsyncEnabled) await syncDir(this.cursorsDir);
    // Only now are the renames durable, and only durable positions may allow segment deletion.
    for (const [cursor, position] of written) cursor.persisted = position;
    this.collect();
    await this.gcChain;
  }

  /** Deletes, oldest first, the non-active segments every cursor's persisted position has passed. */
  private collect(): void {
    if (this.cursors.size === 0 || this.shut) return;
    let floor = Number.POSITIVE_INFINITY;
    for (const cursor of this.cursors.values()) floor = Math.min(floor, cursor.persisted);
    const doomed: Segment[] = [];
    // Leaving the list now (not after unlink) means no new cursor or read starts inside a doomed segment.
    while (this.segments.length > 1 && this.segments[0]!.lastLsn <= floor)
      doomed.push(this.segments.shift()!);
    if (doomed.length === 0) return;
    this.gcChain = this.gcChain.then(async () => {
      // In order, so a crash midway leaves a contiguous suffix that open() accepts.
      for (const segment of doomed) {
        try {
          await unlink(segment.path);
          this.bytesOnDisk -= segment.size;
        } catch (err) {
          if (isNotFound(err)) this.bytesOnDisk -= segment.size;
          else this.emit('backgroundError', asError(err));
        }
      }
      this.updateFull();
    });
  }

  private async shutdown(): Promise<void> {
    this.closing = true;
    if (this.groupTimer) {
      clearTimeout(this.groupTimer);
      this.groupTimer = undefined;
      this.flushQueued = false;
      this.schedule();
    }
    await this.drained();
    if (this.cursorTimer) {
      clearTimeout(this.cursorTimer);
      this.cursorTimer = undefined;
    }
    try {
      // Cursor files are independent of the segments, so they are worth saving even after a write failure.
      await this.flushCursors();
    } finally {
      await this.gcChain;
      this.shut = true;
      await this.file.close();
      openDirs.delete(this.dir);
    }
  }
}

function positive(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) throw new RangeError(`${name} must be a positive integer`);
  return value;
}

async function loadCursors(dir: string): Promise<Map<string, number>> {
  const positions = new Map<string, number>();
  for (const name of (await readdir(dir)).sort()) {
    if (name.startsWith('.')) {
      // The temp file of a persist interrupted before its rename: the previous position still stands.
      await rm(join(dir, name), { force: true });
      continue;
    }
    if (!CURSOR_NAME.test(name)) continue;
    const text = await readFile(join(dir, name), 'utf8');
    const position = Number(text.trim());
    if (text.trim() === '' || !Number.isSafeInteger(position) || position < 0) {
      throw new WalCorruptionError(`cursor file ${join(dir, name)} holds ${JSON.stringify(text)}`);
    }
    positions.set(name, position);
  }
  return positions;
}

async function recoverSegments(
  dir: string,
  cursorPositions: Map<string, number>,
  fsyncEnabled: boolean,
): Promise<{ segments: Segment[]; recovery: WalRecovery }> {
  const found = (await readdir(dir))
    .map((name) => ({ name, firstLsn: parseSegmentName(name) }))
    .filter((entry): entry is { name: string; firstLsn: number } => entry.firstLsn !== undefined)
    .sort((a, b) => a.firstLsn - b.firstLsn);
  const recovery: WalRecovery = { truncatedBytes: 0 };
  const segments: Segment[] = [];

  if (found.length === 0) {
    // Should the segments have vanished under existing cursors, continuing after them keeps LSNs monotonic.
    const firstLsn = Math.max(0, ...cursorPositions.values()) + 1;
    const segment = newSegment(join(dir, segmentName(firstLsn)), firstLsn);
    const file = await open(segment.path, 'wx');
    await file.close();
    if (fsyncEnabled) await syncDir(dir);
    return { segments: [segment], recovery };
  }

  for (let i = 0; i < found.length; i++) {
    const { name, firstLsn } = found[i]!;
    const isLast = i === found.length - 1;
    const segment = newSegment(join(dir, name), firstLsn);
    const previous = segments[segments.length - 1];
    if (previous && firstLsn !== previous.lastLsn + 1) {
      const floor = cursorPositions.size > 0 ? Math.min(...cursorPositions.values()) : -1;
      if (firstLsn < previous.lastLsn + 1 || floor < firstLsn - 1) {
        throw new WalCorruptionError(
          `${dir}: segment ${name} starts at lsn ${firstLsn} but the previous one ends at ${previous.lastLsn}`,
        );
      }
      // A deletion interrupted by a crash: every cursor is past the gap, so what precedes it was consumed.
      for (const old of segments) await unlink(old.path);
      segments.length = 0;
    }
    const file = await open(segment.path, isLast ? 'r+' : 'r');
    try {
      const { size } = await file.stat();
      let lastIndexed = 0;
      const end = await walk(file, 0, firstLsn, size, (lsn, _chunk, _start, _end, offset) => {
        if (offset - lastIndexed >= INDEX_STRIDE) {
          lastIndexed = offset;
          segment.idxLsn.push(lsn);
          segment.idxOff.push(offset);
        }
        return true;
      });
      if (end.bad) {
        // Only the newest segment is written after the older ones were synced, so only it may be torn.
        if (!isLast) {
          throw new WalCorruptionError(
            `${segment.path}: ${end.bad} at byte ${end.offset} (lsn ${end.nextLsn}) in a sealed segment`,
          );
        }
        const tail = Buffer.alloc(size - end.offset);
        await readFully(file, tail, tail.length, end.offset);
        if (!looksTorn(tail, end.offset, end.nextLsn)) {
          throw new WalCorruptionError(
            `${segment.path}: ${end.bad} at byte ${end.offset} (lsn ${end.nextLsn}), yet intact records follow it`,
          );
        }
        // The torn record was never acknowledged: cut it so that new records follow the last good one.
        await file.truncate(end.offset);
        if (fsyncEnabled) await file.sync();
        recovery.truncatedBytes = size - end.offset;
        recovery.reason = `${end.bad} at byte ${end.offset} of ${name} (lsn ${end.nextLsn})`;
      }
      segment.size = end.offset;
      segment.lastLsn = end.nextLsn - 1;
    } finally {
      await file.close();
    }
    segments.push(segment);
  }
  return { segments, recovery };
}

/**
 * Tells a torn tail (cut it) from damage inside acknowledged data (refuse to open) for the bytes from the
 * first bad record to the end of the newest segment. A killed process leaves a record cut short; a power
 * loss can also leave never-written blocks, which read as zeros, anywhere in the unsynced last group.
 * Damage is a bad record with an intact later record behind it and no unwritten block to explain it.
 */
function looksTorn(tail: Buffer, fileOffset: number, expectedLsn: number): boolean {
  const decoded = decodeRecord(tail, 0, tail.length, expectedLsn);
  if (decoded.kind === 'short') return true;
  const claimed = tail.length >= 8 ? HEADER_BYTES + tail.readUInt32LE(4) : tail.length;
  const span = Math.min(tail.length, claimed);
  const SECTOR = 512;
  for (let start = (SECTOR - (fileOffset % SECTOR)) % SECTOR; start + SECTOR <= span; start += SECTOR) {
    if (isZero(tail.subarray(start, start + SECTOR))) return true;
  }
  if (isZero(tail.subarray(0, Math.min(HEADER_BYTES, tail.length)))) return true;
  // Resynchronise: an intact record with a later LSN anywhere behind means this was not the end of the log.
  for (let offset = 1; offset + HEADER_BYTES <= tail.length; offset++) {
    const lsn = tail.readDoubleLE(offset + 8);
    if (!Number.isInteger(lsn) || lsn <= expectedLsn || lsn > expectedLsn + tail.length / HEADER_BYTES)
      continue;
    if (decodeRecord(tail, offset, tail.length, lsn).kind === 'record') return false;
  }
  return true;
}

function isZero(bytes: Buffer): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

async function writeFully(file: FileHandle, buffer: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < buffer.length) {
    const { bytesWritten } = await file.write(buffer, done, buffer.length - done, position + done);
    done += bytesWritten;
  }
}

async function writeAtomically(dir: string, name: string, content: string, sync: boolean): Promise<void> {
  const temp = join(dir, `.${name}.tmp`);
  const file = await open(temp, 'w');
  try {
    await file.writeFile(content);
    if (sync) await file.datasync();
  } finally {
    await file.close();
  }
  await rename(temp, join(dir, name));
}

async function syncDir(path: string): Promise<void> {
  const dir = await open(path, 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
