/** The typed events components exchange. Later issues add theirs here. */
import type { FaultEvent, RejectReason, TelemetrySample } from '../contract/index.js';
import type { RuleFired, RuleResolved, RuleUpdated } from '../rules/types.js';

/** What the pipeline knows about a device when it accepts a message. */
export interface DeviceInfo {
  id: string;
  model: string;
  firmware: string | null;
  ownerId: string | null;
  ownerLocale: string | null;
  region: string | null;
  batch: string | null;
}

/** A device Faultline has no record of (anonymous development mode, replay of a since-deleted device). */
export function unknownDeviceInfo(id: string): DeviceInfo {
  return {
    id,
    model: 'unknown',
    firmware: null,
    ownerId: null,
    ownerLocale: null,
    region: null,
    batch: null,
  };
}

export interface TelemetryAccepted {
  device: DeviceInfo;
  samples: TelemetrySample[];
  /** Server time the message was accepted (ms). */
  receivedAt: number;
  /** WAL position of the record, for exactly-once consumers. */
  lsn: number;
}

export interface FaultAccepted {
  device: DeviceInfo;
  faults: FaultEvent[];
  receivedAt: number;
  lsn: number;
}

export interface DeviceStatusChanged {
  deviceId: string;
  state: 'online' | 'offline';
  reason: string | null;
  at: number;
}

export interface MessageRejected {
  deviceId: string | null;
  topic: string;
  reason: RejectReason;
  message: string;
  deadLetterId: string | null;
}

export interface FaultlineEvents {
  'telemetry.accepted': TelemetryAccepted;
  'fault.accepted': FaultAccepted;
  'device.status': DeviceStatusChanged;
  'message.rejected': MessageRejected;
  /** From the rule engine (src/rules); tickets and pushes react to these. */
  'rule.fired': RuleFired;
  'rule.updated': RuleUpdated;
  'rule.resolved': RuleResolved;
}
