/**
 * Inverter split air conditioner. Lumped physics, tuned so a healthy unit stays
 * inside the bands the shipped rules treat as normal and each injected fault
 * crosses them through its cause, not by writing the symptom:
 *
 * - outdoor temperature: a daily sine (peak 15:00 local) plus slow weather noise;
 * - room temperature: leaks toward outdoor with the house time constant, pulled
 *   toward the setpoint by capacity proportional to compressor frequency;
 * - compressor frequency: proportional control on room error plus outdoor load,
 *   slew-limited, derated to 50 Hz when the discharge runs hot;
 * - compressor (discharge) temperature: first-order lag (tau 4 min) toward a
 *   target set by outdoor temperature, frequency and refrigerant charge;
 * - discharge pressure: R32 saturation pressure at the condensing temperature,
 *   scaled down as charge is lost;
 * - current: follows frequency (and pressure, a little); fan speed follows demand.
 */

import type { Rng } from '../rng.js';
import { clamp, round } from '../units.js';
import {
  type DeviceModel,
  type Effects,
  type FaultCodeInfo,
  lagFactor,
  localHour,
  type StepResult,
} from './types.js';

export const AC_MODES = ['cool', 'heat', 'fan', 'dry', 'off'] as const;
export type AcMode = (typeof AC_MODES)[number];

export const AC_FAULT_CODES: Readonly<Record<string, FaultCodeInfo>> = {
  E01: { description: 'indoor room temperature sensor open or short circuit', severity: 'warning' },
  E02: { description: 'indoor coil temperature sensor fault', severity: 'warning' },
  E05: { description: 'indoor/outdoor unit communication error', severity: 'warning' },
  E07: { description: 'indoor fan motor fault (no speed feedback)', severity: 'critical' },
  EC: { description: 'refrigerant leak detected', severity: 'critical' },
  P1: { description: 'supply voltage protection', severity: 'warning' },
  P2: { description: 'compressor overcurrent protection', severity: 'critical' },
  P4: { description: 'compressor discharge overheat protection (derating)', severity: 'critical' },
};

/** Discharge temperature above which the firmware raises P4 and holds the compressor at its derated speed. */
export const AC_P4_TRIP_C = 105;
const AC_P4_RESET_C = 95;
/** The firmware starts derating here, which keeps healthy units below the 95 °C overheat rule. */
const AC_DERATE_C = 88;
const DERATED_FREQ_HZ = 50;
const MAX_FREQ_HZ = 110;
const MIN_FREQ_HZ = 20;
/** Indoor fan commanded but without speed feedback this long before E07 (and a protective compressor stop). */
const E07_DELAY_MS = 90_000;
const COMPRESSOR_TAU_MS = 4 * 60_000;
const STANDBY_CURRENT_A = 0.03;
const INTERNAL_GAIN_C = 3;

export interface AcProfile {
  capacity: number;
  primaryMode: Exclude<AcMode, 'off'>;
  setpoint: number;
  climateMean: number;
  climateAmplitude: number;
  utcOffsetHours: number;
  houseTauHours: number;
  /** The household is out (unit off) from this local hour for awayHours hours. */
  awayStartHour: number;
  awayHours: number;
  charge: number;
  thermalGain: number;
}

export interface AcState {
  profile: AcProfile;
  room: number;
  compressor: number;
  freq: number;
  weather: number;
  idle: boolean;
  fanDeadMs: number;
  latched: Set<string>;
  commDown: boolean;
}

/** R32 saturation pressure, bar: an exponential fit that is within 3 % from 0 to 55 °C. */
export function r32SaturationBar(tempC: number): number {
  return 8.1 * Math.exp(0.0272 * tempC);
}

export function outdoorTemperature(profile: AcProfile, nowMs: number, weather: number): number {
  const hour = localHour(nowMs, profile.utcOffsetHours);
  return profile.climateMean + profile.climateAmplitude * Math.sin((2 * Math.PI * (hour - 9)) / 24) + weather;
}

/** Where the discharge temperature settles for a given load; exported for the physics tests. */
export function compressorTarget(
  outdoorC: number,
  freqHz: number,
  charge: number,
  mode: AcMode,
  extraHeat = 0,
  gain = 1,
): number {
  if (freqHz <= 0) return outdoorC + 1.5;
  // Less refrigerant carries less heat away: more superheat, a hotter discharge.
  return (
    Math.max(outdoorC, 10) +
    12 +
    0.45 * freqHz * gain +
    18 * (1 - charge) +
    (mode === 'heat' ? 8 : 0) +
    extraHeat
  );
}

export function dischargePressure(
  outdoorC: number,
  roomC: number,
  freqHz: number,
  charge: number,
  mode: AcMode,
): number {
  // An undercharged circuit loses its liquid seal and subcooling: condensing pressure falls steeply.
  const chargeFactor = 0.2 + 0.8 * charge;
  if (freqHz <= 0) return r32SaturationBar(outdoorC) * chargeFactor * 0.95;
  const condenserSide = mode === 'heat' ? roomC + 15 : outdoorC;
  return r32SaturationBar(condenserSide + 8 + 0.12 * freqHz) * chargeFactor;
}

function inAway(hour: number, profile: AcProfile): boolean {
  const offset = (hour - profile.awayStartHour + 24) % 24;
  return offset < profile.awayHours;
}

function makeAcModel(id: string, capacity: number, description: string): DeviceModel<AcState> {
  return {
    id,
    family: 'ac',
    description,
    reportIntervalMs: 10_000,
    defaultFirmware: '3.2.1',
    faultCodes: AC_FAULT_CODES,
    metrics: [
      'room_temp',
      'outdoor_temp',
      'compressor_temp',
      'compressor_freq',
      'discharge_pressure',
      'current',
      'fan_rpm',
      'mode',
    ],

    init(rng: Rng, startMs: number): AcState {
      const primaryMode = rng.weighted({
        cool: 0.78,
        heat: 0.14,
        dry: 0.05,
        fan: 0.03,
      }) as AcProfile['primaryMode'];
      const heating = primaryMode === 'heat';
      const profile: AcProfile = {
        capacity,
        primaryMode,
        setpoint: heating ? rng.uniform(20, 23) : rng.uniform(24, 27),
        climateMean: heating ? rng.uniform(0, 10) : rng.uniform(25, 31),
        climateAmplitude: rng.uniform(3, 7),
        utcOffsetHours: rng.pick([8, 8, 8, 1, 0, -5]),
        houseTauHours: rng.uniform(3, 6),
        awayStartHour: rng.uniform(0, 24),
        awayHours: rng.pick([0, 0, 3, 5, 7]),
        charge: rng.uniform(0.97, 1.03),
        thermalGain: rng.uniform(0.95, 1.05),
      };
      const weather = rng.normal(0, 1);
      const outdoor = outdoorTemperature(profile, startMs, weather);
      return {
        profile,
        room: profile.setpoint + rng.uniform(-0.5, 1.5),
        compressor: outdoor + 1.5,
        freq: 0,
        weather,
        idle: false,
        fanDeadMs: 0,
        latched: new Set(),
        commDown: false,
      };
    },

    step(s: AcState, nowMs: number, dtMs: number, fx: Effects, rng: Rng): StepResult {
      const p = s.profile;
      const dtH = dtMs / 3_600_000;
      const codes: StepResult['codes'] = [];

      // Weather: AR(1) with a time constant of about an hour.
      const keep = Math.exp(-dtMs / 3_600_000);
      s.weather = s.weather * keep + rng.normal(0, 1.2 * Math.sqrt(1 - keep * keep));
      const outdoor = outdoorTemperature(p, nowMs, s.weather);

      const hour = localHour(nowMs, p.utcOffsetHours);
      let mode: AcMode = inAway(hour, p) ? 'off' : p.primaryMode;
      if (fx.forceRunning) mode = p.primaryMode === 'heat' ? 'heat' : 'cool';
      const charge = clamp(p.charge * (fx.refrigerantCharge ?? 1), 0, 1.1);
      const fanStalled = fx.fanStall === true && mode !== 'off';

      // Firmware: E07 after the fan has been commanded without feedback for a while, then a protective stop.
      s.fanDeadMs = fanStalled ? s.fanDeadMs + dtMs : 0;
      if (fanStalled && s.fanDeadMs >= E07_DELAY_MS)
        raiseOnce(s, codes, 'E07', 'indoor fan: no speed feedback');
      if (!fanStalled) s.latched.delete('E07');

      // Inverter control.
      let target = 0;
      if (mode === 'cool' || mode === 'heat') {
        const error = mode === 'cool' ? s.room - p.setpoint : p.setpoint - s.room;
        if (s.idle && error > 0.3) s.idle = false;
        if (!s.idle && error < -1.5) s.idle = true;
        const load = 1.2 * (mode === 'cool' ? outdoor - p.setpoint : p.setpoint - outdoor);
        // Less charge moves less heat per revolution, so the inverter runs faster for the same demand.
        const compensation = 1 / (0.3 + 0.7 * Math.min(1, charge));
        target = s.idle ? 0 : clamp((25 + 18 * error + load) * compensation, MIN_FREQ_HZ, MAX_FREQ_HZ);
        // A unit kept in use does not cycle off; one asked for maximum output runs hard.
        if (fx.forceRunning) target = Math.max(target, MIN_FREQ_HZ + 10);
        if (fx.highDemand) target = Math.max(target, DERATED_FREQ_HZ + 10);
      } else if (mode === 'dry') {
        target = 35;
      }
      if (s.compressor > AC_DERATE_C && target > DERATED_FREQ_HZ) target = DERATED_FREQ_HZ;
      if (s.latched.has('E07')) target = 0;
      if (s.commDown) target = 0;
      const slew = (1 * dtMs) / 1000;
      s.freq += clamp(target - s.freq, -slew * 2, slew);
      if (s.freq < MIN_FREQ_HZ / 2 && target === 0) s.freq = 0;

      // Indoor fan (the one fan_rpm reports): follows demand, runs in every mode but off.
      let fanRpm = 0;
      if (mode !== 'off' && !fanStalled) {
        fanRpm = mode === 'fan' ? 950 : mode === 'dry' ? 650 : 700 + 5 * s.freq;
        fanRpm += rng.normal(0, 12);
      }

      // Room: heat leaks in (or out) through the envelope; the unit moves it when the fan carries it.
      const airflow = fanStalled ? 0.15 : 1;
      const capacityRate = 8 * p.capacity * (s.freq / MAX_FREQ_HZ) * (0.3 + 0.7 * charge) * airflow;
      // Occupants and appliances keep a closed room a few degrees above outdoors.
      let dRoom = (outdoor + INTERNAL_GAIN_C - s.room) / p.houseTauHours;
      if (mode === 'cool' || mode === 'dry') dRoom -= capacityRate;
      if (mode === 'heat') dRoom += capacityRate;
      s.room += dRoom * dtH;

      const compTarget = compressorTarget(
        outdoor,
        s.freq,
        charge,
        mode,
        fx.compressorHeat ?? 0,
        p.thermalGain,
      );
      s.compressor += (compTarget - s.compressor) * lagFactor(dtMs, COMPRESSOR_TAU_MS);

      if (s.compressor > AC_P4_TRIP_C) raiseOnce(s, codes, 'P4', `discharge ${round(s.compressor, 1)} °C`);
      if (s.compressor < AC_P4_RESET_C) s.latched.delete('P4');
      if (charge < 0.5 && s.freq > 0) raiseOnce(s, codes, 'EC', 'low suction superheat margin');

      const pressure = dischargePressure(outdoor, s.room, s.freq, charge, mode);
      const current =
        mode === 'off'
          ? STANDBY_CURRENT_A
          : 0.25 + (fanRpm > 0 ? 0.2 : 0) + 0.085 * s.freq * p.capacity * (0.85 + (0.15 * pressure) / 28);

      // Communication episodes: the indoor unit still reports, but loses everything it reads from outdoors.
      const commDown = fx.commError === true;
      if (commDown && !s.commDown) codes.push({ code: 'E05', detail: 'no answer from outdoor unit' });
      s.commDown = commDown;

      if (fx.sensorFault) raiseOnce(s, codes, 'E01', 'room sensor open circuit');
      const roomReading = fx.sensorFault ? -40 : s.room + rng.normal(0, 0.05);

      const metrics: StepResult['metrics'] = { room_temp: round(roomReading, 1) };
      if (!commDown) {
        metrics.outdoor_temp = round(outdoor + rng.normal(0, 0.05), 1);
        metrics.compressor_temp = round(s.compressor + rng.normal(0, 0.1), 1);
        metrics.compressor_freq = Math.round(s.freq);
        metrics.discharge_pressure = round(pressure + rng.normal(0, 0.05), 2);
      }
      metrics.current = round(current + (mode === 'off' ? 0 : rng.normal(0, 0.03)), 2);
      metrics.fan_rpm = Math.max(0, Math.round(fanRpm));
      metrics.mode = mode;
      return { metrics, codes };
    },
  };
}

function raiseOnce(s: AcState, codes: StepResult['codes'], code: string, detail: string): void {
  if (s.latched.has(code)) return;
  s.latched.add(code);
  codes.push({ code, detail });
}

export const AC_9000 = makeAcModel('AC-9000', 1, 'inverter split air conditioner, 9000 BTU/h (2.6 kW)');
export const AC_12000 = makeAcModel('AC-12000', 1.33, 'inverter split air conditioner, 12000 BTU/h (3.5 kW)');
