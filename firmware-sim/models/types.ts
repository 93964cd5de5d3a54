/**
 * What a device model is: physics that turns time and fault effects into sensor
 * readings, plus the firmware logic that raises the model's own fault codes.
 * Models are pure given their Rng, so message generation stays deterministic.
 */
import type { MetricValue } from '../../src/contract/index.js';
import type { Rng } from '../rng.js';

export type Family = 'ac' | 'rv';
export type Metrics = Record<string, MetricValue>;

export interface FaultCodeInfo {
  description: string;
  severity: 'info' | 'warning' | 'critical' | 'safety';
}

/**
 * How active faults bend the physics. Faults never write metrics directly (except
 * `hover`): they change causes, and the model's correlations produce the symptoms.
 */
export interface Effects {
  /** The owner keeps the appliance running (AC on, vacuum cleaning), so a fault has load to show under. */
  forceRunning?: boolean;
  /** AC: the owner asks for maximum output (turbo, lowest setpoint), so the compressor runs hard. */
  highDemand?: boolean;
  /** AC: extra discharge temperature, °C (blocked condenser, failing valve). */
  compressorHeat?: number;
  /** AC: fraction of the nominal refrigerant charge left, 0..1. */
  refrigerantCharge?: number;
  /** AC: indoor fan motor does not turn. */
  fanStall?: boolean;
  /** AC: room temperature sensor open circuit. */
  sensorFault?: boolean;
  /** AC: indoor/outdoor unit link down. */
  commError?: boolean;
  /** RV: main brush obstruction, 0 (free) .. 1 (wound tight). */
  brushJam?: number;
  /** RV: extra battery heat, °C (cell defect). */
  batteryHeat?: number;
  /** RV: a drive wheel blocked. */
  wheelStuck?: 'left' | 'right';
}

export interface RaisedCode {
  code: string;
  detail?: string;
}

export interface StepResult {
  metrics: Metrics;
  codes: RaisedCode[];
}

export interface DeviceModel<S = unknown> {
  /** Model id as it appears on the device and in the registry, e.g. AC-9000. */
  id: string;
  family: Family;
  description: string;
  reportIntervalMs: number;
  defaultFirmware: string;
  faultCodes: Readonly<Record<string, FaultCodeInfo>>;
  /** Metrics in every healthy report, in order. */
  metrics: readonly string[];
  /** Per-device constants and initial state; draws only from `rng`. */
  init(rng: Rng, startMs: number): S;
  /** Advances the device to `nowMs` (dtMs since the last step) and reads its sensors. */
  step(state: S, nowMs: number, dtMs: number, effects: Effects, rng: Rng): StepResult;
}

/** Hour of day in the device's local time, 0..24. */
export function localHour(nowMs: number, utcOffsetHours: number): number {
  const h = (nowMs / 3_600_000 + utcOffsetHours) % 24;
  return h < 0 ? h + 24 : h;
}

/** First-order lag: how far a value moves toward its target in dt given time constant tau. */
export function lagFactor(dtMs: number, tauMs: number): number {
  return 1 - Math.exp(-dtMs / tauMs);
}
