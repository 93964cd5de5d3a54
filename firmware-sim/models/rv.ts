/**
 * Robot vacuum. A docked/cleaning/returning state machine driven by a daily
 * schedule; the battery drains with suction while cleaning and charges (tapering
 * above 80 %) when docked; battery temperature lags toward a target set by what
 * the battery is doing. Brush and wheel currents carry floor-type and turning noise
 * so a jam or a stuck wheel stands out against a realistic baseline:
 *
 * healthy bands: main_brush_current 0.25-0.65 A, wheel currents 0.15-0.45 A,
 * battery_temp ambient + up to ~11 °C (about 30-40 °C).
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

export const DOCK_STATES = ['docked', 'cleaning', 'returning'] as const;
export type DockState = (typeof DOCK_STATES)[number];

export const RV_FAULT_CODES: Readonly<Record<string, FaultCodeInfo>> = {
  W01: { description: 'drive wheel stuck', severity: 'warning' },
  W02: { description: 'drive wheel motor overcurrent', severity: 'warning' },
  B01: { description: 'side brush jammed', severity: 'warning' },
  B02: { description: 'main brush jammed', severity: 'warning' },
  C01: { description: 'battery low, cannot reach dock', severity: 'info' },
  C02: { description: 'charging fault', severity: 'warning' },
  C03: { description: 'battery overheat: charging and cleaning stopped', severity: 'safety' },
  S01: { description: 'cliff sensor dirty', severity: 'info' },
  D01: { description: 'dust bin missing', severity: 'info' },
  F01: { description: 'suction fan fault', severity: 'warning' },
};

/** Brush current the firmware tolerates for B02_HOLD_MS before it stops the brush and raises B02. */
export const RV_B02_TRIP_A = 1.6;
const B02_HOLD_MS = 60_000;
/** After a B02 stop the owner waits this long before pressing start again. */
const B02_RETRY_MS = 10 * 60_000;
export const RV_C03_TRIP_C = 60;
const C03_RESET_C = 50;
/** A stuck wheel strains this long before the firmware gives up and raises W01. */
const W01_STRAIN_MS = 15_000;
const BATTERY_TAU_MS = 10 * 60_000;
const NOMINAL_SUCTION_PA = 2200;

export interface RvProfile {
  utcOffsetHours: number;
  /** Local hours at which a cleaning run starts. */
  runHours: number[];
  runMinutes: number;
  suctionPa: number;
  ambientC: number;
  capacity: number;
}

export interface RvState {
  profile: RvProfile;
  dock: DockState;
  battery: number;
  batteryTemp: number;
  runEndsAt: number;
  returnEndsAt: number;
  carpet: boolean;
  turn: number;
  brushHighMs: number;
  brushBlockedUntil: number;
  stuckMs: number;
  latched: Set<string>;
}

function makeRvModel(id: string, description: string): DeviceModel<RvState> {
  return {
    id,
    family: 'rv',
    description,
    reportIntervalMs: 5_000,
    defaultFirmware: '1.8.4',
    faultCodes: RV_FAULT_CODES,
    metrics: [
      'battery_temp',
      'battery_level',
      'main_brush_current',
      'wheel_current_left',
      'wheel_current_right',
      'suction',
      'dock_state',
      'cleaning',
    ],

    init(rng: Rng): RvState {
      const first = rng.uniform(8, 11.5);
      const runHours = rng.chance(0.5) ? [first, rng.uniform(14, 19)] : [first];
      const profile: RvProfile = {
        utcOffsetHours: rng.pick([8, 8, 8, 1, 0, -5]),
        runHours,
        runMinutes: rng.uniform(45, 90),
        suctionPa: rng.pick([1500, 2200, 2200, 3000]),
        ambientC: rng.uniform(20, 27),
        capacity: rng.uniform(0.85, 1),
      };
      return {
        profile,
        dock: 'docked',
        battery: rng.uniform(90, 100),
        batteryTemp: profile.ambientC + rng.uniform(0, 1),
        runEndsAt: 0,
        returnEndsAt: 0,
        carpet: false,
        turn: 0,
        brushHighMs: 0,
        brushBlockedUntil: 0,
        stuckMs: 0,
        latched: new Set(),
      };
    },

    step(s: RvState, nowMs: number, dtMs: number, fx: Effects, rng: Rng): StepResult {
      const p = s.profile;
      const dtMin = dtMs / 60_000;
      const codes: StepResult['codes'] = [];
      const overheated = s.latched.has('C03');

      // Schedule: a run starts when a run hour is crossed (or the owner presses start) with enough charge.
      if (s.dock === 'docked' && !overheated && s.battery > 25) {
        const prevHour = localHour(nowMs - dtMs, p.utcOffsetHours);
        const hour = localHour(nowMs, p.utcOffsetHours);
        const scheduled = p.runHours.some((h) => crossed(prevHour, hour, h));
        const pressed = fx.forceRunning === true && s.battery > 25 && nowMs >= s.brushBlockedUntil;
        if (scheduled || pressed) {
          s.dock = 'cleaning';
          s.runEndsAt = nowMs + p.runMinutes * 60_000;
        }
      }

      const suctionFactor = Math.sqrt(p.suctionPa / NOMINAL_SUCTION_PA);
      let brush = 0;
      let left = 0;
      let right = 0;
      let suction = 0;

      if (s.dock === 'cleaning') {
        if (rng.chance(0.02)) s.carpet = !s.carpet;
        s.turn = clamp(s.turn * 0.7 + rng.normal(0, 0.5), -1, 1);
        const jam = clamp(fx.brushJam ?? 0, 0, 1);
        const brushRunning = nowMs >= s.brushBlockedUntil;
        brush = brushRunning ? (s.carpet ? 0.5 : 0.35) * (1 + 4 * jam) + rng.normal(0, 0.02) : 0;
        const base = s.carpet ? 0.3 : 0.25;
        left = base + 0.08 * s.turn + rng.normal(0, 0.015);
        right = base - 0.08 * s.turn + rng.normal(0, 0.015);
        suction = p.suctionPa * (s.carpet ? 1.2 : 1) + rng.normal(0, 20);

        // Firmware: a sustained brush overcurrent stops the brush and sends the robot home.
        s.brushHighMs = brush > RV_B02_TRIP_A ? s.brushHighMs + dtMs : 0;
        if (s.brushHighMs >= B02_HOLD_MS) {
          codes.push({ code: 'B02', detail: `main brush ${round(brush, 2)} A` });
          s.brushHighMs = 0;
          s.brushBlockedUntil = nowMs + B02_RETRY_MS;
          goHome(s, nowMs, rng);
        }

        // A stuck wheel strains, then the firmware cuts it and waits to be freed (still "cleaning").
        if (fx.wheelStuck) {
          s.stuckMs += dtMs;
          const straining = s.stuckMs <= W01_STRAIN_MS;
          const strain = straining ? 1.2 + rng.normal(0, 0.05) : 0;
          if (fx.wheelStuck === 'left') left = strain;
          else right = strain;
          if (!straining) {
            if (fx.wheelStuck === 'left') right = 0;
            else left = 0;
            brush = 0;
            suction = 0;
          }
          if (s.stuckMs > W01_STRAIN_MS && !s.latched.has('W01')) {
            s.latched.add('W01');
            codes.push({ code: 'W01', detail: `${fx.wheelStuck} wheel stuck` });
          }
        } else {
          s.stuckMs = 0;
          s.latched.delete('W01');
        }

        if (s.stuckMs === 0 || s.stuckMs <= W01_STRAIN_MS) {
          s.battery -= ((1.0 * suctionFactor) / p.capacity) * dtMin;
        }
        // An owner who keeps pressing start keeps it cleaning until the battery gives out.
        if (s.battery < 15 || (nowMs >= s.runEndsAt && !fx.forceRunning)) goHome(s, nowMs, rng);
        // A stop during this step (jam, end of run) reads as stopped, not as the last cleaning values.
        if ((s.dock as DockState) !== 'cleaning') {
          brush = 0;
          suction = 0;
        }
      } else if (s.dock === 'returning') {
        left = 0.22 + rng.normal(0, 0.015);
        right = 0.22 + rng.normal(0, 0.015);
        s.battery -= (0.6 / p.capacity) * dtMin;
        if (nowMs >= s.returnEndsAt) s.dock = 'docked';
      } else {
        // Charging tapers above 80 %; an overheated battery is not charged until it cools down.
        if (!overheated && s.battery < 100) s.battery += (s.battery < 80 ? 1.6 : 0.6) * dtMin;
      }
      s.battery = clamp(s.battery, 0, 100);
      if (s.dock !== 'cleaning') s.stuckMs = 0;

      const charging = s.dock === 'docked' && !overheated && s.battery < 100;
      const work =
        s.dock === 'cleaning'
          ? 6 * suctionFactor
          : s.dock === 'returning'
            ? 4
            : charging
              ? s.battery < 80
                ? 9
                : 5
              : 0;
      const target = p.ambientC + work + (fx.batteryHeat ?? 0);
      s.batteryTemp += (target - s.batteryTemp) * lagFactor(dtMs, BATTERY_TAU_MS);

      if (s.batteryTemp > RV_C03_TRIP_C && !overheated) {
        s.latched.add('C03');
        codes.push({ code: 'C03', detail: `battery ${round(s.batteryTemp, 1)} °C` });
        if (s.dock === 'cleaning') goHome(s, nowMs, rng);
      }
      if (overheated && s.batteryTemp < C03_RESET_C) s.latched.delete('C03');

      return {
        metrics: {
          battery_temp: round(s.batteryTemp + rng.normal(0, 0.05), 1),
          battery_level: Math.round(s.battery),
          main_brush_current: round(Math.max(0, brush), 2),
          wheel_current_left: round(Math.max(0, left), 2),
          wheel_current_right: round(Math.max(0, right), 2),
          suction: Math.max(0, Math.round(suction)),
          dock_state: s.dock,
          cleaning: s.dock === 'cleaning',
        },
        codes,
      };
    },
  };
}

function goHome(s: RvState, nowMs: number, rng: Rng): void {
  s.dock = 'returning';
  s.returnEndsAt = nowMs + rng.uniform(90_000, 180_000);
  s.carpet = false;
}

/** True when the clock passed hour h between prev and now (handles midnight). */
function crossed(prev: number, now: number, h: number): boolean {
  if (prev <= now) return prev < h && h <= now;
  return h > prev || h <= now;
}

export const RV_200 = makeRvModel('RV-200', 'robot vacuum with self-charging dock');
