import mqttPacket from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { FrameScanner } from '../../src/broker/packet-guard.js';

function publish(topic: string, payloadBytes: number, qos: 0 | 1 = 1, messageId = 7): Buffer {
  return mqttPacket.generate({
    cmd: 'publish',
    topic,
    payload: Buffer.alloc(payloadBytes, 0x61),
    qos,
    messageId,
    retain: false,
    dup: false,
  });
}

describe('FrameScanner', () => {
  it('forwards packets under the limit untouched, in one piece', () => {
    const scanner = new FrameScanner(1024);
    const chunk = Buffer.concat([publish('devices/a/telemetry', 100), publish('devices/a/telemetry', 200)]);
    const { forward, events } = scanner.scan(chunk);
    expect(events).toEqual([]);
    expect(forward).toHaveLength(1);
    expect(forward[0]).toBe(chunk);
  });

  it('cuts an oversized PUBLISH out of the stream and keeps its neighbours', () => {
    const scanner = new FrameScanner(1024);
    const before = publish('devices/a/telemetry', 10, 1, 1);
    const big = publish('devices/a/telemetry', 5000, 1, 2);
    const after = publish('devices/a/telemetry', 20, 1, 3);
    const stream = Buffer.concat([before, big, after]);
    // Feed in awkward chunk sizes so the body spans several reads.
    const forwarded: Buffer[] = [];
    const events = [];
    for (let i = 0; i < stream.length; i += 700) {
      const r = scanner.scan(stream.subarray(i, i + 700));
      forwarded.push(...r.forward);
      events.push(...r.events);
    }
    expect(Buffer.concat(forwarded)).toEqual(Buffer.concat([before, after]));
    expect(events).toHaveLength(1);
    const event = events[0] as {
      oversizedPublish: {
        topic: string;
        messageId: number;
        qos: number;
        announcedBytes: number;
        payloadPrefix: Buffer;
      };
    };
    expect(event.oversizedPublish.topic).toBe('devices/a/telemetry');
    expect(event.oversizedPublish.messageId).toBe(2);
    expect(event.oversizedPublish.qos).toBe(1);
    expect(event.oversizedPublish.announcedBytes).toBe(big.length);
    expect(event.oversizedPublish.payloadPrefix.length).toBe(5000);
  });

  it('announces a huge packet before its body arrives', () => {
    const scanner = new FrameScanner(1024);
    // PUBLISH header announcing 200 MB, with no body sent yet.
    const header = Buffer.from([0x32, 0x80, 0x80, 0x80, 0x60]);
    const { forward, events } = scanner.scan(header);
    expect(forward).toEqual([]);
    expect(events).toEqual([]); // the cut is armed; the dead letter is reported once the body has passed
  });

  it('treats an oversized non-PUBLISH packet as fatal', () => {
    const scanner = new FrameScanner(1024);
    const subscribe = mqttPacket.generate({
      cmd: 'subscribe',
      messageId: 1,
      subscriptions: [{ topic: 'x'.repeat(2000), qos: 0 }],
    });
    const { events } = scanner.scan(subscribe);
    expect(events).toEqual([{ fatal: subscribe.length }]);
  });

  it('treats a remaining-length varint longer than 4 bytes as fatal', () => {
    const scanner = new FrameScanner(1024);
    const { events } = scanner.scan(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]));
    expect(events).toEqual([{ fatal: Number.POSITIVE_INFINITY }]);
  });
});
