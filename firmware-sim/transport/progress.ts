/**
 * Progress on stderr: a redrawn bar on a terminal, one plain line every few
 * seconds otherwise (CI logs, pipes), so stdout stays clean for the summary.
 */
import { formatDuration } from '../units.js';
import type { Fleet } from './fleet.js';

export interface ProgressOptions {
  out: NodeJS.WriteStream | NodeJS.WritableStream;
  /** Device-time length of the run, when known: shows a bar and a percentage. */
  durationMs?: number | undefined;
  startMs: number;
  tty?: boolean;
  intervalMs?: number;
}

export function compact(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return String(Math.round(n));
}

export function startProgress(fleet: Fleet, o: ProgressOptions): () => void {
  const tty = o.tty ?? (o.out as NodeJS.WriteStream).isTTY === true;
  const interval = o.intervalMs ?? (tty ? 500 : 10_000);
  let lastSent = 0;
  let lastAcked = 0;
  let lastWall = Date.now();

  const render = (): string => {
    const s = fleet.stats;
    const now = Date.now();
    const dt = Math.max(1, now - lastWall) / 1000;
    const sendRate = (s.sent.total - lastSent) / dt;
    const ackRate = (s.acked - lastAcked) / dt;
    lastSent = s.sent.total;
    lastAcked = s.acked;
    lastWall = now;
    const elapsed = Math.max(0, fleet.deviceNow - o.startMs);
    let head: string;
    if (!fleet.running && fleet.clock.wallElapsed() === 0) {
      head = `connecting ${s.connects + s.connectFailures}/${s.devices}`;
    } else if (o.durationMs) {
      const f = Math.min(1, elapsed / o.durationMs);
      const width = 24;
      const filled = Math.round(f * width);
      const bar = tty ? `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ` : '';
      head = `${bar}${(f * 100).toFixed(1)}% device ${formatDuration(elapsed)}/${formatDuration(o.durationMs)}`;
    } else {
      head = `device +${formatDuration(elapsed)}`;
    }
    const lagMs = fleet.running ? fleet.clock.now() - fleet.deviceNow : 0;
    const lag =
      Number.isFinite(lagMs) && lagMs > 60_000 ? ` | behind ${formatDuration(lagMs)} device time` : '';
    return (
      `${head} | online ${s.online}/${s.devices}` +
      (s.connectFailures ? ` (failed ${s.connectFailures})` : '') +
      ` | sent ${compact(s.sent.total)} (${compact(sendRate)}/s) | acked ${compact(s.acked)} (${compact(ackRate)}/s)` +
      ` | inflight ${s.inflight}${s.publishErrors ? ` | errors ${s.publishErrors}` : ''}${lag}`
    );
  };

  const tick = () => {
    const line = render();
    o.out.write(tty ? `\r\x1b[2K${line}` : `progress: ${line}\n`);
  };
  const timer = setInterval(tick, interval);
  timer.unref();
  let stopped = false;
  return () => {
    if (stopped) return;
    stopped = true;
    clearInterval(timer);
    if (tty) o.out.write(`\r\x1b[2K${render()}\n`);
  };
}
