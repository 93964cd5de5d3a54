/**
 * Rule engine: messages per second with the 8 shipped rules plus fillers to 10
 * rules, against 1,000 rules of which the same few apply (fillers are for other
 * models, or for these models but metrics the messages do not carry). The index
 * by model and metric should make the two within 20 %. Also: rule-state memory
 * per device for the shipped rules, measured on the heap and extrapolated to
 * 100,000 devices. Virtual clock, ticks every simulated second, as the integrator
 * would. Throughput is messages per CPU-second of this process (user + system),
 * so a busy machine slows the run down without skewing the figures; wall-clock
 * rates are printed alongside. Run: npx tsx bench/rules.ts [simulated minutes per round]
 */

import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { MetricValue } from '../src/contract/index.js';
import { type LoadedRule, loadRuleFiles, loadRuleText, RuleEngine } from '../src/rules/index.js';
import type { EngineDevice } from '../src/rules/types.js';
import { type Figure, printTable, summarize, writeResults } from './lib.js';

const MINUTES = Number(process.argv[2] ?? 3);
const ROUNDS = 11;
const AC_DEVICES = 2_000;
const RV_DEVICES = 1_000;
const MEMORY_DEVICES = 20_000;
const T0 = Date.UTC(2025, 5, 1, 12);

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const shipped = loadRuleFiles(['rules']).rules;
if (shipped.length !== 8) throw new Error(`expected the 8 shipped rules, got ${shipped.length}`);

/** Rules that never apply to these messages: other models, or these models but metrics nobody sends here. */
function fillers(n: number): LoadedRule[] {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const otherModel = i % 2 === 0;
    const model = otherModel ? ['DW-*', 'WM-*', 'FR-*', 'OV-*'][i % 4] : i % 4 === 1 ? 'AC-*' : 'RV-*';
    const metric = otherModel ? 'compressor_temp' : `aux_sensor_${i}`;
    lines.push(
      `  - id: filler-${i}\n    title: t\n    severity: minor\n    scope: { models: "${model}" }\n` +
        `    when: { threshold: { metric: ${metric}, op: ">", value: ${i} } }\n    for: 5m\n`,
    );
  }
  const r = loadRuleText(`apiVersion: faultline/v1\nrules:\n${lines.join('')}`, 'fillers.yaml', {
    catalogueChecks: false,
  });
  if (r.errors.length > 0) throw new Error(r.errors[0]?.message);
  return r.rules;
}

function fleet(ac: number, rv: number): EngineDevice[] {
  const out: EngineDevice[] = [];
  for (let i = 0; i < ac; i++) {
    out.push({
      id: `ac-${i}`,
      model: i % 2 ? 'AC-12000' : 'AC-9000',
      firmware: '3.2.1',
      region: 'eu',
      batch: null,
      ownerId: `o-${i}`,
      ownerLocale: 'en',
      registeredAt: T0,
    });
  }
  for (let i = 0; i < rv; i++) {
    out.push({
      id: `rv-${i}`,
      model: 'RV-200',
      firmware: '1.8.4',
      region: 'eu',
      batch: null,
      ownerId: `o-rv-${i}`,
      ownerLocale: 'en',
      registeredAt: T0,
    });
  }
  return out;
}

/** Healthy readings with a little movement, as the simulator's bands describe. */
function metricsFor(d: EngineDevice, k: number): Record<string, MetricValue> {
  const wobble = Math.sin(k / 7 + d.id.length) * 0.5;
  if (d.model.startsWith('AC')) {
    return {
      room_temp: 24 + wobble,
      outdoor_temp: 31 + wobble,
      compressor_temp: 76 + wobble,
      compressor_freq: 62,
      discharge_pressure: 24.5 + wobble,
      current: 5.1,
      fan_rpm: 1010,
      mode: 'cool',
    };
  }
  return {
    battery_temp: 33 + wobble,
    battery_level: 80,
    main_brush_current: 0.4 + wobble / 10,
    wheel_current_left: 0.3,
    wheel_current_right: 0.3,
    suction: 2200,
    dock_state: 'cleaning',
    cleaning: true,
  };
}

/** One round: every device reports at its model's interval for MINUTES simulated minutes, ticked every second. */
function throughput(rules: LoadedRule[]): {
  perCpuSecond: number;
  perSecond: number;
  messages: number;
  events: number;
} {
  const devices = fleet(AC_DEVICES, RV_DEVICES);
  let now = T0;
  let events = 0;
  const engine = new RuleEngine({ rules, now: () => now, emit: () => events++ });
  for (const d of devices) engine.registerDevice(d);
  let messages = 0;
  let seq = 0;
  gc();
  const cpu = process.cpuUsage();
  const started = performance.now();
  for (let s = 0; s < MINUTES * 60; s++) {
    now = T0 + s * 1000;
    for (let i = 0; i < devices.length; i++) {
      const d = devices[i] as EngineDevice;
      const interval = d.model.startsWith('AC') ? 10 : 5;
      if ((s + i) % interval !== 0) continue;
      engine.ingestTelemetry(d, [{ ts: now, seq: seq++, metrics: metricsFor(d, s) }], now);
      messages++;
    }
    engine.tick(now);
  }
  const seconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  const cpuSeconds = (used.user + used.system) / 1e6;
  return { perCpuSecond: messages / cpuSeconds, perSecond: messages / seconds, messages, events };
}

function heapUsed(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

/** Heap bytes per device of rule state for the shipped rules, after 10 minutes of healthy reports. */
function memory(): { heapPerDevice: number; estimatePerDevice: number; snapshotPerDevice: number } {
  const devices = fleet(MEMORY_DEVICES / 2, MEMORY_DEVICES / 2);
  // The device records are the integrator's; they exist with or without the engine.
  const samples = devices.map((d) => metricsFor(d, 0));
  let now = T0;
  const before = heapUsed();
  const engine = new RuleEngine({ rules: shipped, now: () => now, emit: () => undefined });
  for (let s = 0; s < 600; s += 5) {
    now = T0 + s * 1000;
    for (let i = 0; i < devices.length; i++) {
      const d = devices[i] as EngineDevice;
      if (d.model.startsWith('AC') && s % 10 !== 0) continue;
      engine.ingestTelemetry(
        d,
        [{ ts: now, seq: s, metrics: samples[i] as Record<string, MetricValue> }],
        now,
      );
    }
    engine.tick(now);
  }
  const after = heapUsed();
  const snapshotBytes = JSON.stringify(engine.snapshot()).length;
  const result = {
    heapPerDevice: (after - before) / devices.length,
    estimatePerDevice: engine.stateBytesEstimate() / devices.length,
    snapshotPerDevice: snapshotBytes / devices.length,
  };
  if (engine.deviceCount() !== devices.length) throw new Error('devices lost');
  return result;
}

const ten = [...shipped, ...fillers(2)];
const thousand = [...shipped, ...fillers(992)];
console.log(
  `load average ${loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')} on ${cpus().length} CPUs`,
);
console.log(
  `rules: ${ten.length} and ${thousand.length}; ${AC_DEVICES + RV_DEVICES} devices; ${MINUTES} simulated minutes per round, ${ROUNDS} rounds`,
);

// Warm-up so the JIT has seen both shapes before anything is measured.
throughput(ten);
throughput(thousand);
const tenRuns: number[] = [];
const thousandRuns: number[] = [];
const tenWall: number[] = [];
const thousandWall: number[] = [];
let messagesPerRound = 0;
for (let r = 0; r < ROUNDS; r++) {
  // Alternate so drift (thermal, GC, neighbours) hits both configurations alike.
  const first = r % 2 === 0 ? ten : thousand;
  const a = throughput(first);
  const b = throughput(first === ten ? thousand : ten);
  const [t, k] = first === ten ? [a, b] : [b, a];
  tenRuns.push(t.perCpuSecond);
  thousandRuns.push(k.perCpuSecond);
  tenWall.push(t.perSecond);
  thousandWall.push(k.perSecond);
  messagesPerRound = a.messages;
}
const tenS = summarize(tenRuns);
const thousandS = summarize(thousandRuns);

const mem = [memory(), memory(), memory()];
const heap = summarize(mem.map((m) => m.heapPerDevice));
const estimate = summarize(mem.map((m) => m.estimatePerDevice));
const snapshot = summarize(mem.map((m) => m.snapshotPerDevice));

const figures: Figure[] = [
  { name: `messages per CPU-second, ${ten.length} rules`, unit: 'msg/s', ...tenS },
  {
    name: `messages per CPU-second, ${thousand.length} rules`,
    unit: 'msg/s',
    ...thousandS,
    reference: { name: `${ten.length} rules`, ...tenS },
    ratio: thousandS.value / tenS.value,
    target: '>= 80%',
    met: thousandS.value / tenS.value >= 0.8,
  },
  { name: `messages/s wall clock, ${ten.length} rules`, unit: 'msg/s', ...summarize(tenWall) },
  { name: `messages/s wall clock, ${thousand.length} rules`, unit: 'msg/s', ...summarize(thousandWall) },
  { name: 'rule state per device (heap)', unit: 'B', ...heap, target: '<= 1024 B', met: heap.value <= 1024 },
  { name: 'rule state per device (engine estimate)', unit: 'B', ...estimate },
  { name: 'snapshot JSON per device', unit: 'B', ...snapshot },
  { name: 'rule state for 100,000 devices (heap, extrapolated)', unit: 'MB', ...scale(heap, 100_000 / 1e6) },
  { name: 'snapshot for 100,000 devices (extrapolated)', unit: 'MB', ...scale(snapshot, 100_000 / 1e6) },
];
printTable(`Rule engine (${messagesPerRound.toLocaleString('en-US')} messages per round)`, figures);
console.log(`\nwrote ${writeResults('rules', figures)}`);

function scale(s: { value: number; min: number; max: number }, k: number) {
  return { value: s.value * k, min: s.min * k, max: s.max * k };
}
