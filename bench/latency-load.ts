/**
 * Background load for bench/latency.ts, in a process of its own so the
 * generator's CPU is not spent in the process that times latencies: plain
 * MQTT.js clients, one connection per device, publishing healthy AC-9000
 * telemetry at QoS 1 at a fixed total rate, paced on a 5 ms tick, with a
 * bounded number of unacknowledged messages (when the bridge falls behind, the
 * achieved rate drops and the parent reports it).
 *
 * Driven over IPC by bench/latency.ts (fork):
 *   parent -> { type: 'connect', url, devices: [{ id, secret }] }   child -> { type: 'connected', ms }
 *   parent -> { type: 'run', rate, seconds }     (at most `seconds`; { type: 'finish' } ends it sooner)
 *                                                                    child -> { type: 'done', report }
 * Run on its own (bench/run.ts runs every bench/*.ts), it only says what it is.
 */
import mqtt, { type MqttClient } from 'mqtt';

export interface LoadReport {
  /** Wall time (ms since the epoch) the pacing started. */
  startWall: number;
  /** Acknowledged messages per BIN_MS bin, from startWall. */
  binMs: number;
  ackedPerBin: number[];
  sent: number;
  acked: number;
  errors: number;
  /** Times the pacer wanted to send but the in-flight cap held it back. */
  heldByInflightCap: number;
  /** Publish → PUBACK of the background messages, ms. */
  pubackP50: number;
  pubackP99: number;
  wallMs: number;
}

type ParentMessage =
  | { type: 'connect'; url: string; devices: Array<{ id: string; secret: string }> }
  | { type: 'run'; rate: number; seconds: number; maxInflight?: number }
  | { type: 'finish' }
  | { type: 'stop' };

const BIN_MS = 100;
const TICK_MS = 5;

function percentile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

class Load {
  private clients: Array<{ id: string; client: MqttClient; seq: number }> = [];
  private finishSoon: (() => void) | null = null;

  /** Ends the pacing now; the report follows once what was sent is acknowledged. */
  finish(): void {
    this.finishSoon?.();
  }

  async connect(url: string, devices: Array<{ id: string; secret: string }>): Promise<void> {
    // 50 at a time: a burst of hundreds of CONNECTs at once only measures the accept queue.
    for (let i = 0; i < devices.length; i += 50) {
      const batch = devices.slice(i, i + 50);
      const connected = await Promise.all(
        batch.map(async (d) => ({
          id: d.id,
          seq: 0,
          client: await mqtt.connectAsync(url, {
            clientId: d.id,
            username: d.id,
            password: d.secret,
            reconnectPeriod: 0,
            keepalive: 60,
            connectTimeout: 20_000,
          }),
        })),
      );
      this.clients.push(...connected);
    }
  }

  run(rate: number, seconds: number, maxInflight: number): Promise<LoadReport> {
    const startWall = Date.now();
    const t0 = performance.now();
    const bins = new Array<number>(Math.ceil((seconds * 1000) / BIN_MS) + 1).fill(0);
    const latencies: number[] = [];
    let total = Math.round(rate * seconds);
    let sent = 0;
    let acked = 0;
    let errors = 0;
    let inflight = 0;
    let held = 0;
    let next = 0;
    const payloadFor = (seq: number, now: number) =>
      // Healthy values: no rule in rules/air-conditioner.yaml comes near firing on them.
      `{"ts":${now},"seq":${seq},"metrics":{"compressor_temp":${70 + (seq % 7)},"compressor_freq":48,` +
      `"discharge_pressure":22.4,"fan_rpm":920,"mode":"cool","room_temp":24.5,"power_w":${1100 + (seq % 50)}}}`;

    return new Promise((resolve) => {
      let finished = false;
      const finish = () => {
        if (finished) return;
        finished = true;
        latencies.sort((a, b) => a - b);
        resolve({
          startWall,
          binMs: BIN_MS,
          ackedPerBin: bins,
          sent,
          acked,
          errors,
          heldByInflightCap: held,
          pubackP50: percentile(latencies, 0.5),
          pubackP99: percentile(latencies, 0.99),
          wallMs: performance.now() - t0,
        });
      };
      const tick = () => {
        const elapsed = performance.now() - t0;
        const due = Math.min(total, Math.floor((elapsed / 1000) * rate));
        const now = Date.now();
        while (sent < due) {
          if (inflight >= maxInflight) {
            held++;
            break;
          }
          const c = this.clients[next]!;
          next = (next + 1) % this.clients.length;
          const seq = c.seq++;
          const at = performance.now();
          inflight++;
          sent++;
          c.client.publish(`devices/${c.id}/telemetry`, payloadFor(seq, now), { qos: 1 }, (err) => {
            inflight--;
            if (err) {
              errors++;
            } else {
              acked++;
              const done = performance.now();
              latencies.push(done - at);
              const bin = Math.floor((done - t0) / BIN_MS);
              if (bin < bins.length) bins[bin] = bins[bin]! + 1;
            }
            if (sent >= total && inflight === 0) finish();
          });
        }
        if (sent < total) setTimeout(tick, TICK_MS);
        else if (inflight === 0) finish();
      };
      this.finishSoon = () => {
        total = sent;
        if (inflight === 0) finish();
      };
      tick();
      // Whatever is still unacknowledged 10 s after the end is left out, not waited for.
      setTimeout(finish, seconds * 1000 + 10_000).unref();
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.client.endAsync().catch(() => c.client.endAsync(true))));
  }
}

if (!process.send) {
  console.log('bench/latency-load.ts is the background load of bench/latency.ts; run that instead.');
} else {
  const load = new Load();
  const send = (m: unknown) => process.send!(m);
  process.on('message', (m: ParentMessage) => {
    if (m.type === 'connect') {
      const t0 = performance.now();
      load.connect(m.url, m.devices).then(
        () => send({ type: 'connected', ms: performance.now() - t0 }),
        (err: Error) => send({ type: 'error', message: `connect: ${err.message}` }),
      );
    } else if (m.type === 'run') {
      load.run(m.rate, m.seconds, m.maxInflight ?? 5_000).then(
        (report) => send({ type: 'done', report }),
        (err: Error) => send({ type: 'error', message: `run: ${err.message}` }),
      );
    } else if (m.type === 'finish') {
      load.finish();
    } else if (m.type === 'stop') {
      void load.close().finally(() => process.exit(0));
    }
  });
  process.on('disconnect', () => process.exit(0));
}
