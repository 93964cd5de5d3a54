/**
 * The whole fleet as one event stream: a k-way merge of the devices' own streams
 * by (device time, position in the fleet), so the order is total and repeatable.
 */
import { DeviceSim, type GenerateOptions } from './device.js';
import type { EventSource, SimEvent } from './events.js';
import type { DeviceSpec } from './spec.js';

export class FleetStream implements EventSource {
  readonly devices: DeviceSim[];
  /** Indexes into devices, a binary min-heap on (next event time, index). */
  private readonly heap: number[] = [];
  private readonly nextAt: number[];

  constructor(specs: DeviceSpec[], opts: GenerateOptions) {
    this.devices = specs.map((s) => new DeviceSim(s, opts));
    this.nextAt = this.devices.map((d) => d.peek()?.at ?? Number.POSITIVE_INFINITY);
    for (let i = 0; i < this.devices.length; i++) {
      if (this.nextAt[i] !== Number.POSITIVE_INFINITY) this.insert(i);
    }
  }

  peek(): SimEvent | undefined {
    const top = this.heap[0];
    return top === undefined ? undefined : this.devices[top]!.peek();
  }

  shift(): SimEvent | undefined {
    const top = this.heap[0];
    if (top === undefined) return undefined;
    const device = this.devices[top]!;
    const ev = device.shift();
    const next = device.peek();
    if (next === undefined) {
      const last = this.heap.pop()!;
      if (this.heap.length > 0) {
        this.heap[0] = last;
        this.down(0);
      }
    } else {
      this.nextAt[top] = next.at;
      this.down(0);
    }
    return ev;
  }

  /** Drains the stream; for tests and `generate`. */
  *[Symbol.iterator](): Iterator<SimEvent> {
    for (let ev = this.shift(); ev !== undefined; ev = this.shift()) yield ev;
  }

  private less(a: number, b: number): boolean {
    const ta = this.nextAt[a]!;
    const tb = this.nextAt[b]!;
    return ta < tb || (ta === tb && a < b);
  }

  private insert(i: number): void {
    this.heap.push(i);
    let c = this.heap.length - 1;
    while (c > 0) {
      const p = (c - 1) >> 1;
      if (!this.less(this.heap[c]!, this.heap[p]!)) break;
      [this.heap[c], this.heap[p]] = [this.heap[p]!, this.heap[c]!];
      c = p;
    }
  }

  private down(i: number): void {
    const n = this.heap.length;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && this.less(this.heap[l]!, this.heap[m]!)) m = l;
      if (r < n && this.less(this.heap[r]!, this.heap[m]!)) m = r;
      if (m === i) return;
      [this.heap[i], this.heap[m]] = [this.heap[m]!, this.heap[i]!];
      i = m;
    }
  }
}

/** A recorded or replayed stream held in memory. */
export class ArraySource implements EventSource {
  private index = 0;
  constructor(private readonly events: SimEvent[]) {}
  peek(): SimEvent | undefined {
    return this.events[this.index];
  }
  shift(): SimEvent | undefined {
    return this.events[this.index++];
  }
}
