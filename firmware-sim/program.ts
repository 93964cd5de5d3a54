/**
 * The firmware-sim command line. Kept apart from cli.ts (the entry point) so tests
 * and later commands (scenario, bench) can build on the same pieces.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { runBench } from './bench.js';
import {
  deriveOwnerSecret,
  deriveSecret,
  readCredentials,
  readOwnerCredentials,
  secretSource,
  writeCredentials,
} from './credentials.js';
import { FAULTS } from './faults/catalogue.js';
import type { SimEvent } from './fleet/events.js';
import { type DeviceSpec, expandFleet, type FleetFile, fleetFromFlags, loadFleetFile } from './fleet/spec.js';
import { ArraySource, FleetStream } from './fleet/stream.js';
import { MODELS } from './models/index.js';
import { defaultWsUrl, OwnerApp, RECEIPT_STATUSES, type ReceiptStatus } from './owner-app.js';
import { type ProvisionDevice, type ProvisionOwner, provision } from './provision.js';
import { readStreamFile, StreamWriter } from './record.js';
import { parseRemap, planReplay, type Remap, remapId } from './replay.js';
import { formatReport, loadScenario, runScenario } from './scenario.js';
import { resolveTarget } from './target.js';
import { Fleet, type FleetOptions, type FleetSummary } from './transport/fleet.js';
import { compact, startProgress } from './transport/progress.js';
import { formatDuration, parseDuration, parseInstant, parseRate } from './units.js';

/** The bridge refuses samples further ahead of its clock than this (ingest.maxFutureSkewMs default). */
const BRIDGE_FUTURE_SKEW_MS = 5 * 60_000;
/** The bridge's default sustained per-device publish rate (mqtt.limits.messagesPerSecond). */
const BRIDGE_DEVICE_RATE = 50;

export interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WriteStream | NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
  now: () => number;
  /** Signals that stop a run gracefully; tests pass an EventEmitter. */
  signals: Pick<NodeJS.EventEmitter, 'on' | 'off'>;
  exit: (code: number) => void;
  setExitCode: (code: number) => void;
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

function intArg(name: string, min: number) {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min)
      throw new InvalidArgumentError(`${name} must be a whole number >= ${min}`);
    return n;
  };
}

function speedArg(value: string): number {
  if (value === 'max') return Number.POSITIVE_INFINITY;
  const n = Number(value);
  if (!(n > 0) || !Number.isFinite(n))
    throw new InvalidArgumentError('speed must be a positive number or "max"');
  return n;
}

function qosArg(value: string): 0 | 1 {
  if (value === '0') return 0;
  if (value === '1') return 1;
  throw new InvalidArgumentError('qos must be 0 or 1');
}

interface FleetFlags {
  fleet?: string;
  devices?: number;
  model?: string;
  seed?: string;
  idPrefix?: string;
  region?: string;
  batch?: string;
  firmware?: string;
  fault?: string[];
}

function addFleetOptions(cmd: Command): Command {
  return cmd
    .option('--fleet <file>', 'fleet file (YAML): groups of models, counts, regions, batches, faults, seed')
    .option('--devices <n>', 'number of devices (instead of a fleet file)', intArg('--devices', 1))
    .option('--model <id>', `model of the devices: ${[...MODELS.keys()].join(', ')}`, 'AC-9000')
    .option(
      '--seed <seed>',
      'seed for every device behaviour and secret (default: the fleet file seed, else 1)',
    )
    .option('--id-prefix <prefix>', 'device id prefix (ids are <prefix><model>-00001...)')
    .option('--region <region>', 'region of the devices (flags only)')
    .option('--batch <batch>', 'production batch of the devices (flags only)')
    .option('--firmware <version>', 'firmware version reported (flags only)')
    .option(
      '--fault <spec>',
      'inject a fault (flags only, repeatable): name, name=0.1 (fraction), name=2 (count), then ,param=value...',
      collect,
    );
}

function loadFleet(f: FleetFlags): FleetFile {
  if (f.fleet) {
    if (f.devices !== undefined || (f.fault?.length ?? 0) > 0) {
      throw new Error('give either --fleet or --devices/--fault, not both');
    }
    const fleet = loadFleetFile(f.fleet);
    if (f.seed !== undefined) fleet.seed = f.seed;
    if (f.idPrefix !== undefined) fleet.idPrefix = f.idPrefix;
    return fleet;
  }
  if (f.devices === undefined) throw new Error('say which devices: --fleet FILE or --devices N [--model ID]');
  return fleetFromFlags({
    devices: f.devices,
    model: f.model ?? 'AC-9000',
    ...(f.seed !== undefined ? { seed: f.seed } : {}),
    ...(f.idPrefix !== undefined ? { idPrefix: f.idPrefix } : {}),
    ...(f.region !== undefined ? { region: f.region } : {}),
    ...(f.batch !== undefined ? { batch: f.batch } : {}),
    ...(f.firmware !== undefined ? { firmware: f.firmware } : {}),
    faults: f.fault ?? [],
  });
}

interface Timing {
  speed: number;
  durationMs: number | undefined;
  startMs: number;
  warnings: string[];
}

/**
 * Device time of the run. Without --start, a real-time run starts now; a faster
 * one ends now (starts one duration ago) so its timestamps never run ahead of
 * the bridge's clock, which refuses samples from the future.
 */
export function resolveTiming(
  o: { speed?: number; duration?: string; start?: string },
  fleet: FleetFile,
  now: number,
): Timing {
  const speed = o.speed ?? (fleet.speed === 'max' ? Number.POSITIVE_INFINITY : fleet.speed) ?? 1;
  const durationRaw = o.duration ?? fleet.duration;
  const durationMs = durationRaw === undefined ? undefined : parseDuration(durationRaw);
  if (durationMs === 0) throw new Error('duration must be more than 0');
  const warnings: string[] = [];
  const startText = o.start ?? fleet.start;
  let startMs: number;
  if (startText !== undefined) {
    startMs = parseInstant(startText);
  } else if (speed === 1) {
    startMs = now;
  } else if (durationMs !== undefined) {
    startMs = Math.floor((now - durationMs) / 1000) * 1000;
  } else {
    startMs = now;
    warnings.push(
      'speed > 1 without --duration or --start: device time runs ahead of real time and the bridge refuses samples more than 5 min in the future',
    );
  }
  if (durationMs !== undefined && Number.isFinite(speed)) {
    // The device clock at wall time w is start + (w - now) * speed; it must not pass w + skew.
    const endDevice = startMs + durationMs;
    const endWall = now + durationMs / speed;
    if (endDevice > endWall + BRIDGE_FUTURE_SKEW_MS) {
      warnings.push(
        `device time reaches ${new Date(endDevice).toISOString()}, ahead of the wall clock: the bridge refuses samples more than 5 min in the future`,
      );
    }
  }
  return { speed, durationMs, startMs, warnings };
}

function rateWarning(specs: DeviceSpec[], speed: number): string | undefined {
  const fastest = Math.min(...specs.map((s) => MODELS.get(s.model)!.reportIntervalMs));
  const perDevice = (1000 / fastest) * speed;
  if (perDevice > BRIDGE_DEVICE_RATE) {
    return `at speed ${Number.isFinite(speed) ? speed : 'max'} a device sends about ${Number.isFinite(perDevice) ? Math.round(perDevice) : 'unbounded'} msg/s; the bridge's default per-device limit is ${BRIDGE_DEVICE_RATE}/s (mqtt.limits.messagesPerSecond) and it drops the excess as rate_limited`;
  }
  return undefined;
}

function registryOf(specs: DeviceSpec[]) {
  return specs.map(({ id, model, firmware, ownerId, ownerLocale, region, batch }) => ({
    id,
    model,
    firmware,
    ownerId,
    ownerLocale,
    region,
    batch,
  }));
}

/** The fleet's owners, one per owner id, with the locale of their first device and a derived app secret. */
export function ownersOf(seed: string, devices: ReadonlyArray<{ ownerId: string; ownerLocale: string }>) {
  const owners = new Map<string, ProvisionOwner>();
  for (const d of devices) {
    if (!owners.has(d.ownerId)) {
      owners.set(d.ownerId, {
        id: d.ownerId,
        locale: d.ownerLocale,
        secret: deriveOwnerSecret(seed, d.ownerId),
        quietHours: 'off',
      });
    }
  }
  return [...owners.values()];
}

export function formatSummary(s: FleetSummary, extra: { seed?: string; startMs: number }): string {
  const iso = (ms: number) => (Number.isFinite(ms) ? new Date(ms).toISOString() : '-');
  const wallS = s.wallMs / 1000;
  const lines = [
    `firmware-sim: ${s.stoppedBy === 'stop' ? 'stopped' : 'finished'} after ${wallS.toFixed(1)} s; device time ${iso(s.deviceTime.start)} .. ${iso(s.deviceTime.end)} (${formatDuration(s.deviceTime.end - s.deviceTime.start)})`,
    `  devices   ${s.devices}: connects ${s.connects}, failed ${s.connectFailures}, drops ${s.drops}, reconnects ${s.reconnects}, lost ${s.lostConnections}`,
    `  messages  sent ${s.sent.total} (telemetry ${s.sent.telemetry}, faults ${s.sent.faults}, status ${s.sent.status}), acked ${s.acked}, errors ${s.publishErrors}, unacked ${s.unacked}, not sent ${s.unsent}, undeliverable ${s.undeliverable}`,
    `  injected  malformed ${s.injected.malformed}, duplicates ${s.injected.duplicates}, out-of-order ${s.injected.outOfOrder}, batch uploads ${s.injected.batches}`,
    `  rate      ${compact(wallS > 0 ? s.sent.total / wallS : 0)} msg/s, ${(s.bytes / 1e6).toFixed(1)} MB`,
  ];
  for (const f of s.failedDevices.slice(0, 5)) lines.push(`  failed    ${f.id}: ${f.error}`);
  if (s.failedDevices.length > 5) lines.push(`  failed    ... and ${s.failedDevices.length - 5} more`);
  if (extra.seed !== undefined) {
    lines.push(
      `  replay    same stream: --seed ${extra.seed} --start ${new Date(extra.startMs).toISOString()}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

interface DriveOptions {
  brokerUrl: string;
  json: boolean;
  progress: boolean;
  progressIntervalMs?: number | undefined;
  durationMs: number | undefined;
  seed?: string;
  onDone?: () => Promise<void>;
}

/** Starts a fleet, stops it on a signal, prints the summary. Exit code 0 on a clean end or stop. */
async function drive(fleet: Fleet, io: Io, d: DriveOptions): Promise<number> {
  let signals = 0;
  const onSignal = (signal: string) => {
    signals++;
    if (signals === 1) {
      io.stderr.write(
        `\nfirmware-sim: ${signal}: stopping, flushing ${fleet.stats.inflight} unacknowledged message(s); again to abort\n`,
      );
      void fleet.stop();
    } else {
      io.stderr.write('firmware-sim: aborted\n');
      io.exit(130);
    }
  };
  io.signals.on('SIGINT', onSignal);
  io.signals.on('SIGTERM', onSignal);
  const stopProgress = d.progress
    ? startProgress(fleet, {
        out: io.stderr,
        durationMs: d.durationMs,
        startMs: fleet.clock.startMs,
        ...(d.progressIntervalMs !== undefined ? { intervalMs: d.progressIntervalMs } : {}),
      })
    : () => {};
  try {
    await fleet.start();
    if (fleet.stats.devices > 0 && fleet.stats.connects === 0 && fleet.stats.connectFailures > 0) {
      const summary = await fleet.stop();
      stopProgress();
      io.stderr.write(
        `firmware-sim: no device could connect to ${d.brokerUrl} (${summary.failedDevices[0]?.error ?? 'unknown error'})\n`,
      );
      return 1;
    }
    const summary = await fleet.finished;
    stopProgress();
    await d.onDone?.();
    io.stdout.write(
      d.json
        ? `${JSON.stringify({ ...summary, seed: d.seed, startMs: fleet.clock.startMs })}\n`
        : formatSummary(summary, {
            ...(d.seed !== undefined ? { seed: d.seed } : {}),
            startMs: fleet.clock.startMs,
          }),
    );
    if (summary.stoppedBy === 'stop') return 0;
    // A run that ended by itself doubles as a check: everything connected and everything sent was acknowledged.
    return summary.connectFailures > 0 || summary.publishErrors > 0 || summary.unacked > 0 ? 1 : 0;
  } finally {
    stopProgress();
    io.signals.off('SIGINT', onSignal);
    io.signals.off('SIGTERM', onSignal);
  }
}

function transportOptions(
  o: { broker?: string; connectRate?: string; maxInflight?: number; keepalive?: number },
  io: Io,
) {
  const target = resolveTarget({ broker: o.broker }, io.env);
  return {
    brokerUrl: target.brokerUrl,
    connectRate: parseRate(o.connectRate ?? '100/s'),
    ...(o.maxInflight !== undefined ? { maxInflight: o.maxInflight } : {}),
    ...(o.keepalive !== undefined ? { keepaliveSec: o.keepalive } : {}),
  } satisfies Partial<FleetOptions>;
}

export function buildProgram(io: Io): Command {
  const program = new Command('firmware-sim')
    .description(
      'Simulated appliance fleet for Faultline: deterministic device physics, fault injection, record and replay',
    )
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    })
    .exitOverride();

  addFleetOptions(
    program
      .command('run')
      .description('connect a simulated fleet to the bridge and stream telemetry, faults and status'),
  )
    .option('--speed <x>', 'device seconds per wall second, or "max" (default: fleet file, else 1)', speedArg)
    .option('--duration <d>', 'device time to simulate, e.g. 2h (default: until stopped)')
    .option(
      '--start <iso>',
      'device time at the start, e.g. 2026-01-01T00:00:00Z (default: now, or now - duration when faster than real time)',
    )
    .addOption(new Option('--qos <n>', 'QoS of telemetry and faults (status is always 1)').argParser(qosArg))
    .option('--connect-rate <rate>', 'connections per second, e.g. 200/s (default: fleet file, else 100/s)')
    .option('--broker <url>', 'MQTT URL (default mqtt://127.0.0.1:$FAULTLINE_MQTT_PORT, 1883)')
    .option('--credentials <file>', 'secrets from provision --out (default: derived from the seed)')
    .option('--record <file>', 'write every released event to a stream file (JSON Lines) for replay')
    .option(
      '--max-inflight <n>',
      'unacknowledged messages across the fleet before the stream waits',
      intArg('--max-inflight', 1),
    )
    .option('--keepalive <s>', 'MQTT keepalive, seconds', intArg('--keepalive', 0))
    .option('--connect-timeout <d>', 'give up on a device that gets no CONNACK within this', '10s')
    .option('--no-progress', 'no progress line on stderr')
    .option(
      '--progress-interval <d>',
      'how often to print progress (default 0.5s on a terminal, 10s otherwise)',
    )
    .option('--json', 'print the summary as JSON')
    .action(async (o) => {
      const fleetFile = loadFleet(o);
      const timing = resolveTiming(o, fleetFile, io.now());
      const specs = expandFleet(fleetFile, { durationMs: timing.durationMs });
      const qos: 0 | 1 = o.qos ?? fleetFile.qos ?? 1;
      const credentials = o.credentials ? readCredentials(o.credentials) : undefined;
      const secretFor = secretSource(
        fleetFile.seed,
        credentials,
        specs.map((s) => s.id),
      );
      const warnings = [...timing.warnings, rateWarning(specs, timing.speed)].filter(Boolean);
      for (const w of warnings) io.stderr.write(`firmware-sim: warning: ${w}\n`);
      const endMs = timing.durationMs === undefined ? undefined : timing.startMs + timing.durationMs;
      const source = new FleetStream(specs, { seed: fleetFile.seed, startMs: timing.startMs, endMs, qos });
      const recorder = o.record
        ? new StreamWriter(o.record, {
            seed: fleetFile.seed,
            startMs: timing.startMs,
            ...(endMs !== undefined ? { endMs } : {}),
            speed: Number.isFinite(timing.speed) ? timing.speed : 'max',
            createdAt: new Date(io.now()).toISOString(),
            devices: registryOf(specs),
          })
        : undefined;
      const transport = transportOptions(
        { ...o, connectRate: o.connectRate ?? fleetFile.connectRate?.toString() },
        io,
      );
      const fleet = new Fleet({
        ...transport,
        source,
        deviceIds: specs.map((s) => s.id),
        secretFor,
        startMs: timing.startMs,
        endMs,
        speed: timing.speed,
        hooks: recorder
          ? { onEvent: (ev: SimEvent, wall: number) => recorder.write(ev, Math.round(wall)) }
          : {},
      });
      const code = await drive(fleet, io, {
        brokerUrl: transport.brokerUrl,
        json: o.json === true,
        progress: o.progress !== false,
        progressIntervalMs: o.progressInterval === undefined ? undefined : parseDuration(o.progressInterval),
        durationMs: timing.durationMs,
        seed: fleetFile.seed,
        ...(recorder ? { onDone: () => recorder.close() } : {}),
      });
      io.setExitCode(code);
    });

  addFleetOptions(
    program
      .command('generate')
      .description(
        'write the event stream a run would send, without a broker (deterministic: same flags, same bytes)',
      ),
  )
    .requiredOption('--duration <d>', 'device time to generate, e.g. 1h')
    .option(
      '--start <iso>',
      'device time at the start (default: now - duration; give it for reproducible output)',
    )
    .addOption(new Option('--qos <n>', 'QoS of telemetry and faults').argParser(qosArg))
    .option('--out <file>', 'stream file to write (default: stdout)')
    .action(async (o) => {
      const fleetFile = loadFleet(o);
      const timing = resolveTiming({ ...o, speed: Number.POSITIVE_INFINITY }, fleetFile, io.now());
      const specs = expandFleet(fleetFile, { durationMs: timing.durationMs });
      const endMs = timing.startMs + timing.durationMs!;
      const source = new FleetStream(specs, {
        seed: fleetFile.seed,
        startMs: timing.startMs,
        endMs,
        qos: o.qos ?? fleetFile.qos ?? 1,
      });
      const writer = new StreamWriter(o.out ?? io.stdout, {
        seed: fleetFile.seed,
        startMs: timing.startMs,
        endMs,
        createdAt: new Date(timing.startMs).toISOString(),
        devices: registryOf(specs),
      });
      for (const ev of source) {
        if (!writer.write(ev)) await writer.drain();
      }
      await writer.close();
    });

  addFleetOptions(
    program
      .command('provision')
      .description(
        'register the fleet with the bridge (POST /api/v1/devices, CSV import for large fleets) and write its credentials',
      ),
  )
    .option(
      '--recording <file>',
      'provision the devices of a stream file instead (with --remap, under their new ids)',
    )
    .option('--remap <regex=replacement>', 'with --recording: rename device ids (repeatable)', collect)
    .requiredOption('--out <file>', 'credentials file to write (JSON, mode 600)')
    .option('--api <url>', 'bridge HTTP URL (default http://127.0.0.1:$FAULTLINE_HTTP_PORT, 8080)')
    .option('--token <token>', 'admin token (default $FAULTLINE_ADMIN_TOKEN)')
    .option(
      '--bulk-threshold <n>',
      'use the CSV import from this many devices',
      intArg('--bulk-threshold', 1),
      100,
    )
    .option('--no-register', 'only write the credentials file')
    .action(async (o) => {
      const target = resolveTarget({ api: o.api, token: o.token }, io.env);
      let seed: string;
      let registry: Omit<ProvisionDevice, 'secret'>[];
      if (o.recording) {
        const { header } = await readStreamFile(o.recording);
        if (!header?.devices) throw new Error(`${o.recording} has no device list in its header`);
        seed = o.seed ?? header.seed ?? '1';
        const remaps: Remap[] = (o.remap ?? []).map(parseRemap);
        registry = header.devices.map((d) => ({ ...d, id: remapId(d.id, remaps) }));
      } else {
        const fleetFile = loadFleet(o);
        seed = fleetFile.seed;
        registry = registryOf(expandFleet(fleetFile));
      }
      const devices: ProvisionDevice[] = registry.map((d) => ({ ...d, secret: deriveSecret(seed, d.id) }));
      const owners = ownersOf(seed, devices);
      writeCredentials(o.out, {
        version: 1,
        seed,
        api: target.apiUrl,
        createdAt: new Date(io.now()).toISOString(),
        devices,
        owners: owners.map(({ id, locale, secret }) => ({ id, locale, secret })),
      });
      if (o.register === false) {
        io.stdout.write(
          `wrote credentials for ${devices.length} device(s) and ${owners.length} owner(s) to ${o.out} (not registered)\n`,
        );
        return;
      }
      if (!target.token) throw new Error('no admin token: set FAULTLINE_ADMIN_TOKEN or pass --token');
      const result = await provision({
        apiUrl: target.apiUrl,
        token: target.token,
        devices,
        owners,
        bulkThreshold: o.bulkThreshold,
        log: (line) => io.stderr.write(`firmware-sim: ${line}\n`),
      });
      io.stdout.write(
        `provisioned ${devices.length} device(s) via ${result.mode === 'bulk' ? 'CSV import' : 'POST /api/v1/devices'}: ` +
          `${result.created} created, ${result.existing} already registered, ${result.failed.length} failed; ` +
          `${owners.length} owner(s) (${result.owners.created} new, ${result.owners.updated} updated); credentials in ${o.out}\n`,
      );
      for (const f of result.failed.slice(0, 10)) io.stderr.write(`  ${f.id}: ${f.status} ${f.message}\n`);
      if (result.failed.length > 0) io.setExitCode(1);
    });

  program
    .command('replay')
    .description('play a stream file (from run --record or generate) into the bridge again')
    .argument('<file>', 'stream file')
    .option('--speed <x>', 'replay speed relative to the recorded timing, or "max"', speedArg, 1)
    .option(
      '--remap <regex=replacement>',
      "rename device ids, e.g. 'dev-(.*)=lab-$1' (repeatable; first match wins)",
      collect,
    )
    .addOption(
      new Option('--timing <basis>', 'schedule by device time, or by the wall offsets of a recording')
        .choices(['device', 'wall'])
        .default('device'),
    )
    .option('--broker <url>', 'MQTT URL (default mqtt://127.0.0.1:$FAULTLINE_MQTT_PORT, 1883)')
    .option('--credentials <file>', 'secrets for the (remapped) ids (default: derived from --seed)')
    .option('--seed <seed>', 'seed for derived secrets (default: the recording seed)')
    .option('--connect-rate <rate>', 'connections per second', '100/s')
    .option(
      '--max-inflight <n>',
      'unacknowledged messages before the replay waits',
      intArg('--max-inflight', 1),
    )
    .option('--no-progress', 'no progress line on stderr')
    .option(
      '--progress-interval <d>',
      'how often to print progress (default 0.5s on a terminal, 10s otherwise)',
    )
    .option('--json', 'print the summary as JSON')
    .action(async (file: string, o) => {
      const { header, entries } = await readStreamFile(file);
      const remaps: Remap[] = (o.remap ?? []).map(parseRemap);
      const plan = planReplay(entries, remaps, o.timing);
      if (plan.events.length === 0) throw new Error(`${file} has no events`);
      const seed: string = o.seed ?? header?.seed ?? '1';
      const credentials = o.credentials ? readCredentials(o.credentials) : undefined;
      const secretFor = secretSource(seed, credentials, plan.deviceIds);
      const last = plan.events[plan.events.length - 1]!.at;
      const transport = transportOptions(o, io);
      const fleet = new Fleet({
        ...transport,
        source: new ArraySource(plan.events),
        deviceIds: plan.deviceIds,
        secretFor,
        startMs: plan.startMs,
        speed: o.speed,
      });
      const code = await drive(fleet, io, {
        brokerUrl: transport.brokerUrl,
        json: o.json === true,
        progress: o.progress !== false,
        progressIntervalMs: o.progressInterval === undefined ? undefined : parseDuration(o.progressInterval),
        durationMs: last - plan.startMs || undefined,
      });
      io.setExitCode(code);
    });

  program
    .command('scenario')
    .description(
      'run a scenario (fleet, faults, expectations) against a live bridge and check tickets and guides',
    )
    .argument('<files...>', 'scenario files (YAML), e.g. firmware-sim/scenarios/*.yaml')
    .option('--broker <url>', 'MQTT URL (default mqtt://127.0.0.1:$FAULTLINE_MQTT_PORT, 1883)')
    .option('--api <url>', 'bridge HTTP URL (default http://127.0.0.1:$FAULTLINE_HTTP_PORT, 8080)')
    .option('--token <token>', 'admin token (default $FAULTLINE_ADMIN_TOKEN)')
    .option('--ws <url>', 'bridge MQTT over WebSocket (default ws://localhost:$FAULTLINE_WS_PORT, 8083)')
    .option('--speed <x>', "override the scenarios' speed", speedArg)
    .option('--no-provision', 'the devices and owners are registered already')
    .option('--json', 'print the reports as JSON lines')
    .action(async (files: string[], o) => {
      const target = resolveTarget({ broker: o.broker, api: o.api, token: o.token }, io.env);
      if (!target.token) throw new Error('no admin token: set FAULTLINE_ADMIN_TOKEN or pass --token');
      const scenarios = files.map(loadScenario);
      let failed = 0;
      for (const sc of scenarios) {
        if (o.speed !== undefined) sc.speed = o.speed;
        const report = await runScenario(sc, {
          brokerUrl: target.brokerUrl,
          apiUrl: target.apiUrl,
          wsUrl: o.ws ?? defaultWsUrl(io.env),
          token: target.token,
          provision: o.provision !== false,
          now: io.now,
          log: (line) => io.stderr.write(`firmware-sim: ${sc.name}: ${line}\n`),
        });
        if (!report.pass) failed++;
        io.stdout.write(o.json ? `${JSON.stringify(report)}\n` : formatReport(report));
      }
      if (scenarios.length > 1 && !o.json) {
        io.stdout.write(`${scenarios.length - failed} of ${scenarios.length} scenario(s) passed\n`);
      }
      io.setExitCode(failed > 0 ? 1 : 0);
    });

  program
    .command('bench')
    .description(
      'sustained ingest and end-to-end latency (telemetry -> ticket -> guide on the owner app), as JSON',
    )
    .option('--devices <n>', 'air conditioners streaming', intArg('--devices', 1), 100)
    .option(
      '--faulty <n>',
      'of them, units that overheat (one ticket and one guide each)',
      intArg('--faulty', 1),
      10,
    )
    .option(
      '--speed <x>',
      'device seconds per wall second (500: 50 msg/s per unit, the bridge limit)',
      speedArg,
      400,
    )
    .option('--duration <d>', 'device time (the overheat starts 10 min in)', '1h')
    .option('--broker <url>', 'MQTT URL (default mqtt://127.0.0.1:$FAULTLINE_MQTT_PORT, 1883)')
    .option('--api <url>', 'bridge HTTP URL (default http://127.0.0.1:$FAULTLINE_HTTP_PORT, 8080)')
    .option('--token <token>', 'admin token (default $FAULTLINE_ADMIN_TOKEN)')
    .option('--ws <url>', 'bridge MQTT over WebSocket (default ws://localhost:$FAULTLINE_WS_PORT, 8083)')
    .action(async (o) => {
      const target = resolveTarget({ broker: o.broker, api: o.api, token: o.token }, io.env);
      if (!target.token) throw new Error('no admin token: set FAULTLINE_ADMIN_TOKEN or pass --token');
      const report = await runBench({
        brokerUrl: target.brokerUrl,
        apiUrl: target.apiUrl,
        wsUrl: o.ws ?? defaultWsUrl(io.env),
        token: target.token,
        devices: o.devices,
        faulty: o.faulty,
        speed: o.speed,
        durationMs: parseDuration(o.duration),
        now: io.now,
      });
      io.stdout.write(`${JSON.stringify(report)}\n`);
      const clean =
        report.run.connectFailures === 0 && report.run.unacked === 0 && report.run.publishErrors === 0;
      io.setExitCode(clean && report.missing.tickets === 0 && report.missing.guides === 0 ? 0 : 1);
    });

  program
    .command('owner-app')
    .description(
      "stand in for an owner's phone app: receive notifications over MQTT/WebSocket and send receipts",
    )
    .requiredOption('--owner <id>', 'owner id')
    .option('--credentials <file>', 'owner secret from provision --out (default: derived from --seed)')
    .option('--seed <seed>', 'seed of the derived secret (default 1)', '1')
    .option('--ws <url>', 'bridge MQTT over WebSocket (default ws://localhost:$FAULTLINE_WS_PORT, 8083)')
    .option(
      '--receipts <list>',
      `receipts sent for each guide, comma-separated: ${RECEIPT_STATUSES.join(', ')}; "none" for none`,
      'delivered,opened',
    )
    .option('--count <n>', 'exit after this many notifications', intArg('--count', 1))
    .option('--timeout <d>', 'exit after this much wall time (exit 1 if --count was not reached)')
    .option('--json', 'print each notification as one JSON line')
    .action(async (o) => {
      const receipts = o.receipts === 'none' ? [] : (o.receipts as string).split(',').map((s) => s.trim());
      for (const r of receipts) {
        if (!RECEIPT_STATUSES.includes(r as ReceiptStatus))
          throw new Error(`unknown receipt "${r}" (one of ${RECEIPT_STATUSES.join(', ')}, or none)`);
      }
      let secret: string;
      if (o.credentials) {
        const found = readOwnerCredentials(o.credentials).get(o.owner);
        if (!found) throw new Error(`${o.credentials} has no owner ${o.owner}`);
        secret = found;
      } else {
        secret = deriveOwnerSecret(o.seed, o.owner);
      }
      const wsUrl: string = o.ws ?? defaultWsUrl(io.env);
      let finish = () => {};
      const finished = new Promise<void>((resolve) => {
        finish = resolve;
      });
      const app = new OwnerApp({
        wsUrl,
        ownerId: o.owner,
        secret,
        receipts: receipts as ReceiptStatus[],
        onNotification: ({ notification: n }) => {
          io.stdout.write(
            o.json
              ? `${JSON.stringify(n)}\n`
              : `${n.kind} ${n.id}: ${n.signal ?? ''} "${n.title ?? ''}" device ${n.deviceId ?? '-'} ticket ${n.ticketId ?? '-'} (${n.locale ?? '-'}${n.guide ? `, guide ${n.guide.id}` : ''})\n`,
          );
          if (o.count !== undefined && app.received.length >= o.count) finish();
        },
      });
      const onSignal = () => finish();
      io.signals.on('SIGINT', onSignal);
      io.signals.on('SIGTERM', onSignal);
      const timer = o.timeout ? setTimeout(finish, parseDuration(o.timeout)) : undefined;
      try {
        await app.start();
        io.stderr.write(`firmware-sim: owner ${o.owner} connected to ${wsUrl}, waiting for notifications\n`);
        await finished;
      } finally {
        if (timer) clearTimeout(timer);
        io.signals.off('SIGINT', onSignal);
        io.signals.off('SIGTERM', onSignal);
        await app.stop();
      }
      if (o.count !== undefined && app.received.length < o.count) {
        io.stderr.write(`firmware-sim: got ${app.received.length} of ${o.count} notification(s)\n`);
        io.setExitCode(1);
      }
    });

  program
    .command('faults')
    .description('list the fault catalogue')
    .action(() => {
      for (const f of FAULTS.values()) {
        io.stdout.write(`${f.name} [${f.families.join(', ')}] ${f.summary}\n`);
        io.stdout.write(`    shows: ${f.signature}\n`);
        if (f.rules.length > 0) io.stdout.write(`    rules: ${f.rules.join(', ')}\n`);
        const params = Object.entries(f.params.shape as Record<string, { description?: string }>);
        if (params.length > 0) {
          io.stdout.write(
            `    params: ${params.map(([k, v]) => (v.description ? `${k} (${v.description})` : k)).join('; ')}\n`,
          );
        }
      }
    });

  program
    .command('models')
    .description('list the device models')
    .action(() => {
      for (const m of MODELS.values()) {
        io.stdout.write(
          `${m.id}: ${m.description}; every ${m.reportIntervalMs / 1000} s; firmware ${m.defaultFirmware}\n`,
        );
        io.stdout.write(`    metrics: ${m.metrics.join(', ')}\n`);
        io.stdout.write(
          `    codes: ${Object.entries(m.faultCodes)
            .map(([c, i]) => `${c} ${i.description}`)
            .join('; ')}\n`,
        );
      }
    });

  return program;
}
