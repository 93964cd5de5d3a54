/**
 * Remembers recent sequence numbers per device so a QoS 1 redelivery (same
 * device, same seq) is processed once. A window, not a set of everything: a
 * seq far below the newest is too old to be a redelivery and is let through
 * (devices restart their counters after a reboot).
 */
export interface DedupSnapshot {
  window: number;
  devices: Record<string, number[]>;
}

export class Deduplicator {
  private readonly seen = new Map<string, { max: number; recent: Set<number> }>();

  constructor(private readonly window: number) {}

  /** True the first time (device, seq) is seen within the window. */
  firstTime(deviceId: string, seq: number): boolean {
    let entry = this.seen.get(deviceId);
    if (!entry) {
      entry = { max: seq, recent: new Set([seq]) };
      this.seen.set(deviceId, entry);
      return true;
    }
    if (entry.recent.has(seq)) return false;
    entry.recent.add(seq);
    if (seq > entry.max) entry.max = seq;
    if (entry.recent.size > this.window) this.trim(entry);
    return true;
  }

  private trim(entry: { max: number; recent: Set<number> }): void {
    // Keep the newest `window` seqs; Sets iterate in insertion order, so drop the oldest inserted.
    const excess = entry.recent.size - this.window;
    let dropped = 0;
    for (const seq of entry.recent) {
      if (dropped >= excess) break;
      entry.recent.delete(seq);
      dropped++;
    }
  }

  snapshot(): DedupSnapshot {
    const devices: Record<string, number[]> = {};
    for (const [id, entry] of this.seen) devices[id] = [...entry.recent];
    return { window: this.window, devices };
  }

  restore(snapshot: DedupSnapshot): void {
    this.seen.clear();
    for (const [id, seqs] of Object.entries(snapshot.devices)) {
      const recent = new Set(seqs.slice(-this.window));
      let max = 0;
      for (const s of recent) if (s > max) max = s;
      this.seen.set(id, { max, recent });
    }
  }
}
