/** A bare Aedes broker on a free loopback port, recording what devices publish and how they connect. */
import { once } from 'node:events';
import { createServer, type Server } from 'node:net';
import { Aedes, type Client } from 'aedes';

export interface Received {
  clientId: string | null;
  topic: string;
  payload: string;
  qos: number;
  retain: boolean;
}

export interface ConnectRecord {
  clientId: string;
  username: string | undefined;
  password: string | undefined;
  will: { topic: string; payload: string; qos: number; retain: boolean } | undefined;
}

export interface TestBroker {
  port: number;
  url: string;
  broker: Aedes;
  /** Every publish from a client, in arrival order (wills published by the broker have clientId null). */
  received: Received[];
  connects: ConnectRecord[];
  /** Optional credential check; return false to refuse with "bad username or password". */
  authorize?: (clientId: string, username: string | undefined, password: string | undefined) => boolean;
  /** Holds each publish this long before accepting it, so PUBACKs lag and messages pile up in flight. */
  ackDelayMs?: number;
  close(): Promise<void>;
}

export async function startBroker(): Promise<TestBroker> {
  const received: Received[] = [];
  const connects: ConnectRecord[] = [];
  const state: Partial<TestBroker> = {};
  const broker = await Aedes.createBroker({
    authenticate: (client: Client, username, password, done) => {
      const pw = password?.toString('utf8');
      const ok = state.authorize ? state.authorize(client.id, username, pw) : true;
      if (ok) return done(null, true);
      const err = Object.assign(new Error('bad credentials'), { returnCode: 4 as const });
      return done(err, false);
    },
    authorizePublish: (_client, _packet, done) => {
      if (state.ackDelayMs) setTimeout(() => done(null), state.ackDelayMs);
      else done(null);
    },
    preConnect: (_client, packet, done) => {
      connects.push({
        clientId: packet.clientId,
        username: packet.username,
        password: packet.password?.toString('utf8'),
        will: packet.will
          ? {
              topic: packet.will.topic,
              payload: Buffer.from(packet.will.payload).toString('utf8'),
              qos: packet.will.qos ?? 0,
              retain: packet.will.retain ?? false,
            }
          : undefined,
      });
      done(null, true);
    },
  });
  broker.on('publish', (packet, client) => {
    if (packet.topic.startsWith('$SYS')) return;
    received.push({
      clientId: client ? client.id : null,
      topic: packet.topic,
      payload: Buffer.from(packet.payload).toString('utf8'),
      qos: packet.qos,
      retain: packet.retain,
    });
  });
  const server: Server = createServer(broker.handle);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (!address || typeof address !== 'object') throw new Error('broker did not bind');
  return Object.assign(state, {
    port: address.port,
    url: `mqtt://127.0.0.1:${address.port}`,
    broker,
    received,
    connects,
    async close() {
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  }) as TestBroker;
}
