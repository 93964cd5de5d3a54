/** Topic rules for device clients: their own telemetry/faults/status out, their own commands and errors in. */
import { isDevicePublishKind, parseDeviceTopic, type RejectReason } from '../contract/index.js';

export type PublishCheck =
  | { ok: true; kind: 'telemetry' | 'faults' | 'status' }
  | { ok: false; reason: RejectReason; message: string };

export function checkDevicePublish(deviceId: string, topic: string): PublishCheck {
  const parsed = parseDeviceTopic(topic);
  if (!parsed || parsed.deviceId !== deviceId) {
    return { ok: false, reason: 'spoofed_topic', message: `device ${deviceId} may not publish to ${topic}` };
  }
  if (!isDevicePublishKind(parsed.kind)) {
    return {
      ok: false,
      reason: 'unknown_topic',
      message: `devices publish to devices/${deviceId}/{telemetry,faults,status}, not ${topic}`,
    };
  }
  return { ok: true, kind: parsed.kind };
}

/** A device may subscribe to devices/{id}/commands, anything below it, and devices/{id}/errors. */
export function deviceMaySubscribe(deviceId: string, filter: string): boolean {
  const commands = `devices/${deviceId}/commands`;
  if (filter === commands || filter === `${commands}/#`) return true;
  if (filter === `devices/${deviceId}/errors`) return true;
  if (filter.startsWith(`${commands}/`)) return true;
  return false;
}
