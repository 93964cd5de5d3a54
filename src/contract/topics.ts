/**
 * MQTT topic contract between devices, owner apps and Faultline.
 * This module and its siblings in src/contract/ are the only part of src/ that
 * firmware-sim may import, so they must stay free of server-side dependencies.
 */

/** Device ids become topic levels and client ids: no MQTT wildcards, no separators. */
export const DEVICE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;
export const OWNER_ID_PATTERN = DEVICE_ID_PATTERN;

export const DEVICE_TOPIC_ROOT = 'devices';
export const OWNER_TOPIC_ROOT = 'owners';

/** Message kinds a device publishes. */
export const DEVICE_PUBLISH_KINDS = ['telemetry', 'faults', 'status'] as const;
export type DevicePublishKind = (typeof DEVICE_PUBLISH_KINDS)[number];

export const topics = {
  telemetry: (deviceId: string) => `devices/${deviceId}/telemetry`,
  faults: (deviceId: string) => `devices/${deviceId}/faults`,
  status: (deviceId: string) => `devices/${deviceId}/status`,
  /** Faultline tells a device why one of its messages was refused. */
  errors: (deviceId: string) => `devices/${deviceId}/errors`,
  /** Commands to a device; the device subscribes to `commands/#`. */
  commands: (deviceId: string) => `devices/${deviceId}/commands`,
  ownerNotifications: (ownerId: string) => `owners/${ownerId}/notifications`,
  ownerReceipts: (ownerId: string) => `owners/${ownerId}/receipts`,
} as const;

/** Shared-subscription filters used in external-broker mode; one per kind so QoS stays per kind. */
export function sharedSubscriptionFilters(group: string): string[] {
  return DEVICE_PUBLISH_KINDS.map((kind) => `$share/${group}/devices/+/${kind}`);
}

export interface ParsedDeviceTopic {
  deviceId: string;
  kind: string;
}

/**
 * Splits `devices/{id}/{kind}`; returns null for anything else (extra levels included).
 * Hot path: a manual split avoids a regex per message.
 */
export function parseDeviceTopic(topic: string): ParsedDeviceTopic | null {
  if (!topic.startsWith('devices/')) return null;
  const second = topic.indexOf('/', 8);
  if (second <= 8) return null;
  const kind = topic.slice(second + 1);
  if (kind.length === 0 || kind.includes('/')) return null;
  return { deviceId: topic.slice(8, second), kind };
}

export function isDevicePublishKind(kind: string): kind is DevicePublishKind {
  return (DEVICE_PUBLISH_KINDS as readonly string[]).includes(kind);
}
