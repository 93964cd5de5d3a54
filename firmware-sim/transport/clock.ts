/**
 * Device time from wall time: device = start + (wall - wallStart) * speed.
 * Speed Infinity runs as fast as the transport can send.
 */
export class VirtualClock {
  private wallStart: number | undefined;

  constructor(
    readonly startMs: number,
    readonly speed: number,
    private readonly wall: () => number = Date.now,
  ) {
    if (!(speed > 0)) throw new Error(`speed must be positive, got ${speed}`);
  }

  start(): void {
    this.wallStart = this.wall();
  }

  get running(): boolean {
    return this.wallStart !== undefined;
  }

  /** Current device time; the start time until the clock is started. */
  now(): number {
    if (this.wallStart === undefined) return this.startMs;
    if (this.speed === Number.POSITIVE_INFINITY) return Number.POSITIVE_INFINITY;
    return this.startMs + (this.wall() - this.wallStart) * this.speed;
  }

  /** Wall milliseconds until device time reaches deviceMs (0 if it has). */
  wallUntil(deviceMs: number): number {
    if (this.speed === Number.POSITIVE_INFINITY) return 0;
    return Math.max(0, (deviceMs - this.now()) / this.speed);
  }

  /** Wall milliseconds since start(), 0 before. */
  wallElapsed(): number {
    return this.wallStart === undefined ? 0 : this.wall() - this.wallStart;
  }
}

/** Spaces events at most `perSecond` apart, in arrival order, without bursts. */
export class Pacer {
  private next = 0;
  private readonly gapMs: number;

  constructor(
    perSecond: number,
    private readonly wall: () => number = Date.now,
  ) {
    if (!(perSecond > 0)) throw new Error(`rate must be positive, got ${perSecond}`);
    this.gapMs = 1000 / perSecond;
  }

  /** Resolves when the caller may go; each call reserves the next slot. */
  take(): Promise<void> {
    const wait = this.reserve();
    if (wait < 1) return Promise.resolve();
    return new Promise((resolve) => setTimeout(resolve, wait));
  }

  /** Reserves the next slot and returns how long the caller must wait, ms. */
  reserve(): number {
    const now = this.wall();
    const slot = Math.max(now, this.next);
    this.next = slot + this.gapMs;
    return slot - now;
  }
}
