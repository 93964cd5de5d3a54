/**
 * The embedded Aedes broker: TCP, MQTT over WebSocket and TLS listeners, device
 * authentication, the topic ACL, connection and rate limits, and acceptance
 * into the ingest pipeline inside authorizePublish (Aedes sends PUBACK right
 * after that callback, so calling back only once the message is durable is
 * what makes a PUBACK mean "stored").
 */
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createTcpServer, type Server as NetServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createServer as createTlsServer } from 'node:tls';
import { Aedes, type AuthenticateError, type Client, type PublishPacket, type Subscription } from 'aedes';
import { createWebSocketStream, WebSocketServer } from 'ws';
import type { Config } from '../config/schema.js';
import { DEVICE_ID_PATTERN, OWNER_ID_PATTERN, type RejectReason, topics } from '../contract/index.js';
import { type DeviceInfo, unknownDeviceInfo } from '../events/types.js';
import type { IngestPipeline } from '../ingest/pipeline.js';
import { TokenBucket } from '../ingest/rate-limit.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/registry.js';
import { checkDevicePublish, deviceMaySubscribe } from './acl.js';
import { GuardedConnection, type OversizedPublish } from './packet-guard.js';

export type AuthResult =
  | { ok: true; device: DeviceInfo }
  | { ok: false; reason: 'unknown_device' | 'bad_secret' | 'disabled' };

export interface DeviceAuthenticator {
  authenticate(id: string, secret: string): Promise<AuthResult>;
}

interface Session {
  device: DeviceInfo;
  bucket: TokenBucket;
  conn: GuardedConnection;
}

/**
 * Owner apps connect with username `owner:<ownerId>` and the owner's secret, and a client id that
 * starts with `owner:<ownerId>` (one per app install, so a persistent session survives). They may
 * subscribe only to owners/<id>/notifications and publish only to owners/<id>/receipts.
 */
export interface OwnerAuthenticator {
  authenticate(ownerId: string, secret: string): Promise<'ok' | 'unknown_owner' | 'bad_secret' | 'disabled'>;
  /** A receipt (delivered, opened, fixed, not fixed) from the app. Resolve once it is stored. */
  receipt(ownerId: string, payload: Buffer): Promise<void>;
  /** The app is connected: a chance to send what it missed beyond the broker's session. */
  connected?(ownerId: string, clientId: string): void;
}

interface OwnerSession {
  ownerId: string;
  bucket: TokenBucket;
}

export const OWNER_USERNAME_PREFIX = 'owner:';

export interface BrokerAddresses {
  mqtt: string;
  ws: string | null;
  tls: string | null;
}

export interface EmbeddedBrokerOptions {
  config: Readonly<Config>;
  log: Logger;
  metrics: Metrics;
  devices: DeviceAuthenticator;
  pipeline: IngestPipeline;
}

/** Topic a refused publish is rewritten to, so Aedes forwards it to nobody ($ topics never match # or +). */
const DROPPED_TOPIC = '$faultline/dropped';
/** What a refused subscription filter becomes, so a persisted session cannot bring it back. */
const REFUSED_TOPIC = '$faultline/refused';
const LOG_EVERY_MS = 10_000;

export class EmbeddedBroker {
  private aedes!: Aedes;
  private readonly sessions = new WeakMap<Client, Session>();
  private readonly owners = new WeakMap<Client, OwnerSession>();
  private ownerAuth: OwnerAuthenticator | null = null;
  private readonly connections = new Set<GuardedConnection>();
  private readonly servers: Array<NetServer | HttpServer> = [];
  private wss: WebSocketServer | null = null;
  private readonly lastLogged = new Map<string, number>();
  private unsubscribePressure: (() => void) | null = null;

  constructor(private readonly o: EmbeddedBrokerOptions) {}

  async start(): Promise<BrokerAddresses> {
    const { mqtt } = this.o.config;
    if (mqtt.allowAnonymous) {
      this.o.log.warn(
        '!!! mqtt.allowAnonymous is ON: any client may connect without a credential. Development only; never expose this broker. !!!',
      );
    }
    this.aedes = await Aedes.createBroker({
      id: 'faultline',
      authenticate: (client, username, password, done) => this.authenticate(client, username, password, done),
      authorizePublish: (client, packet, done) => this.authorizePublish(client, packet, done),
      authorizeSubscribe: (client, sub, done) => this.authorizeSubscribe(client, sub, done),
    });
    this.aedes.on('clientReady', (client) => this.onReady(client));
    this.aedes.on('clientDisconnect', (client) => this.onDisconnect(client));
    this.aedes.on('clientError', (client, err) =>
      this.throttledLog(`clientError:${client?.id}`, { err, clientId: client?.id }, 'client error'),
    );
    this.aedes.on('connectionError', (_client, err) =>
      this.throttledLog('connectionError', { err }, 'connection error before CONNECT'),
    );
    this.unsubscribePressure = this.o.pipeline.onPressure((paused) => {
      for (const conn of this.connections) {
        if (paused) conn.hold();
        else conn.release();
      }
      if (paused) this.o.metrics.clientsPaused.inc(this.connections.size);
    });

    const tcp = createTcpServer((socket) => this.accept(socket, 'tcp'));
    const mqttAddr = await listen(tcp, mqtt.port, mqtt.host);
    this.servers.push(tcp);

    let wsAddr: string | null = null;
    if (mqtt.wsPort !== null) {
      const http = createHttpServer((_req, res) => {
        res.writeHead(426, { 'content-type': 'text/plain' }).end('MQTT over WebSocket only\n');
      });
      this.wss = new WebSocketServer({
        server: http,
        maxPayload: mqtt.limits.maxPacketBytes + 16,
        handleProtocols: (protocols) =>
          protocols.has('mqtt') ? 'mqtt' : protocols.has('mqttv3.1') ? 'mqttv3.1' : false,
      });
      this.wss.on('connection', (ws, req) => {
        const stream = createWebSocketStream(ws);
        Object.defineProperty(stream, 'remoteAddress', { value: req.socket.remoteAddress });
        this.accept(stream, 'ws');
      });
      const port = await listen(http, mqtt.wsPort, mqtt.host);
      wsAddr = `ws://${displayHost(mqtt.host)}:${port.port}`;
      this.servers.push(http);
    }

    let tlsAddr: string | null = null;
    if (mqtt.tls) {
      const tls = createTlsServer(
        {
          cert: readFileSync(mqtt.tls.cert),
          key: readFileSync(mqtt.tls.key),
          ...(mqtt.tls.ca
            ? { ca: readFileSync(mqtt.tls.ca), requestCert: true, rejectUnauthorized: true }
            : {}),
        },
        (socket) => this.accept(socket, 'tls'),
      );
      const port = await listen(tls, mqtt.tls.port, mqtt.host);
      tlsAddr = `mqtts://${displayHost(mqtt.host)}:${port.port}`;
      this.servers.push(tls);
    }
    return { mqtt: `mqtt://${displayHost(mqtt.host)}:${mqttAddr.port}`, ws: wsAddr, tls: tlsAddr };
  }

  /** Publishes from Faultline itself (device errors, owner notifications). */
  publish(topic: string, payload: string | Buffer, qos: 0 | 1 = 0, retain = false): Promise<void> {
    return new Promise((resolve, reject) => {
      this.aedes.publish(
        {
          cmd: 'publish',
          topic,
          payload: typeof payload === 'string' ? Buffer.from(payload) : payload,
          qos,
          retain,
          dup: false,
        },
        (err) => (err ? reject(err) : resolve()),
      );
    });
  }

  /** Drops a device's live session (it was disabled); its next CONNECT is refused. */
  disconnectDevice(deviceId: string, reason: string): void {
    const client = (this.aedes as unknown as { clients: Record<string, Client | undefined> }).clients[
      deviceId
    ];
    if (!client) return;
    this.o.log.info({ deviceId, reason }, 'disconnecting device');
    client.close();
  }

  get connectedClients(): number {
    return this.connections.size;
  }

  async stop(): Promise<void> {
    this.unsubscribePressure?.();
    for (const server of this.servers) server.close();
    this.wss?.close();
    for (const conn of this.connections) conn.destroy();
    await new Promise<void>((resolve) => this.aedes.close(() => resolve()));
  }

  private accept(stream: Duplex, kind: 'tcp' | 'ws' | 'tls'): void {
    const { limits } = this.o.config.mqtt;
    if (this.connections.size >= limits.maxConnections) {
      this.o.metrics.connectionsRefused.inc({ reason: 'max_connections' });
      this.throttledLog(
        'max_connections',
        { limit: limits.maxConnections },
        'connection refused: maximum connections reached',
      );
      stream.destroy();
      return;
    }
    const conn = new GuardedConnection(stream, {
      maxPacketBytes: limits.maxPacketBytes,
      onOversizedPublish: (packet, c) => this.onOversizedPublish(packet, c, kind),
      onFatal: (bytes) => {
        this.o.metrics.messagesRejected.inc({ reason: 'oversized_packet' });
        this.o.log.warn(
          {
            deviceId: this.sessionOf(conn)?.device.id,
            announcedBytes: bytes,
            limit: limits.maxPacketBytes,
            transport: kind,
          },
          'connection closed: oversized or malformed packet that is not a PUBLISH',
        );
      },
    });
    this.connections.add(conn);
    this.o.metrics.connections.inc({ kind });
    conn.once('close', () => {
      this.connections.delete(conn);
      this.o.metrics.connections.dec({ kind });
    });
    if (this.o.pipeline.paused) conn.hold();
    this.aedes.handle(conn);
  }

  /**
   * An oversized PUBLISH never reached Aedes. It becomes a dead letter (with a bounded prefix of its
   * payload), the device is told why, and a QoS 1 packet is acknowledged so the device moves on
   * instead of resending it forever; the connection stays up.
   */
  private onOversizedPublish(packet: OversizedPublish, conn: GuardedConnection, transport: string): void {
    const session = this.sessionOf(conn);
    const limit = this.o.config.mqtt.limits.maxPacketBytes;
    if (!session || packet.qos > 1) {
      this.o.metrics.messagesRejected.inc({ reason: 'oversized_packet' });
      this.o.log.warn(
        { announcedBytes: packet.announcedBytes, limit, transport },
        'connection closed: oversized packet',
      );
      conn.destroy();
      return;
    }
    const deviceId = session.device.id;
    const message = `packet of ${packet.announcedBytes} bytes exceeds mqtt.limits.maxPacketBytes (${limit}); first ${packet.payloadPrefix.length} payload bytes kept`;
    this.throttledLog(
      `oversized:${deviceId}`,
      { deviceId, topic: packet.topic, announcedBytes: packet.announcedBytes, limit },
      message,
    );
    this.o.pipeline.reject(deviceId, packet.topic, 'oversized_packet', message, packet.payloadPrefix).then(
      () => {
        if (packet.qos === 1 && packet.messageId !== null) {
          conn.write(Buffer.from([0x40, 0x02, packet.messageId >> 8, packet.messageId & 0xff]));
        }
      },
      (err: unknown) => {
        this.o.log.error({ err, deviceId }, 'could not dead-letter an oversized packet; closing connection');
        conn.destroy();
      },
    );
  }

  private sessionOf(conn: GuardedConnection): Session | undefined {
    const client = (conn as unknown as { client?: Client }).client;
    return client ? this.sessions.get(client) : undefined;
  }

  private authenticate(
    client: Client,
    username: string | undefined,
    password: Buffer | undefined,
    done: (error: AuthenticateError | null, success: boolean | null) => void,
  ): void {
    const refuse = (reason: string, code: 4 | 5 | 2) => {
      this.o.metrics.connectionsRefused.inc({ reason });
      this.throttledLog(`auth:${client.id}`, { clientId: client.id, reason }, 'connection refused');
      const err = new Error(`connection refused: ${reason}`) as AuthenticateError;
      err.returnCode = code;
      done(err, false);
    };
    const conn = client.conn as GuardedConnection;
    if (!DEVICE_ID_PATTERN.test(client.id)) {
      refuse('invalid_client_id', 2);
      return;
    }
    if (username?.startsWith(OWNER_USERNAME_PREFIX)) {
      this.authenticateOwner(client, username.slice(OWNER_USERNAME_PREFIX.length), password, refuse, done);
      return;
    }
    if (username === undefined && this.o.config.mqtt.allowAnonymous) {
      this.sessions.set(client, { device: unknownDeviceInfo(client.id), bucket: this.bucket(), conn });
      done(null, true);
      return;
    }
    if (username === undefined || password === undefined) {
      refuse('missing_credentials', 4);
      return;
    }
    if (username !== client.id) {
      refuse('client_id_mismatch', 5);
      return;
    }
    this.o.devices.authenticate(client.id, password.toString('utf8')).then(
      (result) => {
        if (!result.ok) {
          refuse(result.reason, result.reason === 'disabled' ? 5 : 4);
          return;
        }
        this.sessions.set(client, { device: result.device, bucket: this.bucket(), conn });
        done(null, true);
      },
      (err: unknown) => {
        this.o.metrics.dbErrors.inc({ op: 'authenticate' });
        this.o.log.error({ err, clientId: client.id }, 'authentication failed: registry unavailable');
        const e = new Error('registry unavailable') as AuthenticateError;
        e.returnCode = 3; // server unavailable: the device retries later
        done(e, false);
      },
    );
  }

  private authorizePublish(
    client: Client | null,
    packet: PublishPacket,
    done: (error?: Error | null) => void,
  ): void {
    const owner = client ? this.owners.get(client) : undefined;
    if (owner) {
      this.ownerPublish(owner, packet, done);
      return;
    }
    // Aedes republishes wills of clients that died while no broker was running with client === null.
    const session = client ? this.sessions.get(client) : undefined;
    if (!session) {
      if (client === null && packet.topic.endsWith('/status')) {
        done(null);
        return;
      }
      done(new Error('not authenticated'));
      return;
    }
    const deviceId = session.device.id;
    const check = checkDevicePublish(deviceId, packet.topic);
    if (!check.ok) {
      this.refusePublish(session, packet, check.reason, check.message, done);
      return;
    }
    if (!session.bucket.take(Date.now())) {
      this.refusePublish(
        session,
        packet,
        'rate_limited',
        `more than ${this.o.config.mqtt.limits.messagesPerSecond} msg/s sustained; message dropped`,
        done,
      );
      return;
    }
    const payload = packet.payload as Buffer;
    const accepting = this.o.pipeline.accept(
      { deviceId, kind: check.kind, topic: packet.topic, payload, qos: packet.qos },
      session.device,
    );
    accepting.then(
      (verdict) => {
        if (!verdict.accepted) dropForwarding(packet);
        done(null);
      },
      (err: unknown) => {
        // Not durable: no PUBACK. Closing the connection makes the device resend after reconnecting.
        this.o.log.error({ err, deviceId }, 'could not accept message durably; closing connection');
        done(err as Error);
      },
    );
  }

  private refusePublish(
    session: Session,
    packet: PublishPacket,
    reason: RejectReason,
    message: string,
    done: (error?: Error | null) => void,
  ): void {
    const topic = packet.topic;
    dropForwarding(packet);
    this.throttledLog(
      `${reason}:${session.device.id}`,
      { deviceId: session.device.id, topic, reason },
      message,
    );
    // A positive ack and a drop, as MQTT 3.1.1 §3.3.5 allows: the device learns why on its errors topic
    // and the connection stays up, so one bad message does not cost the device its session.
    this.o.pipeline.reject(session.device.id, topic, reason, message, packet.payload as Buffer).then(
      () => done(null),
      (err: unknown) => done(err as Error),
    );
  }

  private authorizeSubscribe(
    client: Client,
    sub: Subscription,
    done: (error: Error | null, subscription?: Subscription | null) => void,
  ): void {
    const session = this.sessions.get(client);
    const owner = this.owners.get(client);
    // aedes persists a persistent session's SUBSCRIBE packet whole once any filter is granted,
    // refused filters included, and restores them all at the next connect. So a refused filter is
    // rewritten to a topic that matches nothing before anything is stored, and every answer waits
    // a turn so that all filters of the packet are judged (and rewritten) before the first store.
    if (
      (session && deviceMaySubscribe(session.device.id, sub.topic)) ||
      (owner && sub.topic === topics.ownerNotifications(owner.ownerId))
    ) {
      setImmediate(() => done(null, sub));
      return;
    }
    this.o.metrics.subscriptionsRefused.inc();
    this.throttledLog(
      `sub:${client.id}`,
      { clientId: client.id, filter: sub.topic },
      'subscription refused by topic ACL',
    );
    sub.topic = REFUSED_TOPIC;
    setImmediate(() => done(null, null)); // SUBACK 0x80 for this filter; the connection stays up
  }

  /** Enables owner-app clients; until then a username starting with owner: is refused. */
  setOwnerAuthenticator(auth: OwnerAuthenticator): void {
    this.ownerAuth = auth;
  }

  private authenticateOwner(
    client: Client,
    ownerId: string,
    password: Buffer | undefined,
    refuse: (reason: string, code: 4 | 5 | 2) => void,
    done: (error: AuthenticateError | null, success: boolean | null) => void,
  ): void {
    const auth = this.ownerAuth;
    if (!auth || password === undefined || !OWNER_ID_PATTERN.test(ownerId)) {
      refuse(auth ? 'missing_credentials' : 'owners_disabled', 4);
      return;
    }
    if (!client.id.startsWith(`${OWNER_USERNAME_PREFIX}${ownerId}`)) {
      refuse('client_id_mismatch', 5);
      return;
    }
    auth.authenticate(ownerId, password.toString('utf8')).then(
      (result) => {
        if (result !== 'ok') {
          refuse(result, result === 'disabled' ? 5 : 4);
          return;
        }
        this.owners.set(client, { ownerId, bucket: this.bucket() });
        done(null, true);
      },
      (err: unknown) => {
        this.o.metrics.dbErrors.inc({ op: 'authenticate_owner' });
        this.o.log.error({ err, ownerId }, 'owner authentication failed: registry unavailable');
        const e = new Error('registry unavailable') as AuthenticateError;
        e.returnCode = 3;
        done(e, false);
      },
    );
  }

  private ownerPublish(
    owner: OwnerSession,
    packet: PublishPacket,
    done: (error?: Error | null) => void,
  ): void {
    const topic = packet.topic;
    dropForwarding(packet); // receipts are for Faultline, never forwarded to other clients
    if (topic !== topics.ownerReceipts(owner.ownerId) || !owner.bucket.take(Date.now())) {
      const reason = topic !== topics.ownerReceipts(owner.ownerId) ? 'spoofed_topic' : 'rate_limited';
      this.o.metrics.messagesRejected.inc({ reason });
      this.throttledLog(
        `owner:${owner.ownerId}:${reason}`,
        { ownerId: owner.ownerId, topic, reason },
        'owner publish refused',
      );
      done(null);
      return;
    }
    this.ownerAuth!.receipt(owner.ownerId, packet.payload as Buffer).then(
      () => done(null),
      (err: unknown) => {
        this.o.log.warn({ err, ownerId: owner.ownerId }, 'receipt refused');
        done(null);
      },
    );
  }

  private onReady(client: Client): void {
    const owner = this.owners.get(client);
    if (owner) {
      this.ownerAuth?.connected?.(owner.ownerId, client.id);
      return;
    }
    const session = this.sessions.get(client);
    if (!session) return;
    this.o.pipeline
      .recordStatus(session.device.id, 'online', 'connected', session.device)
      .catch((err: unknown) => {
        this.o.log.error({ err, deviceId: session.device.id }, 'could not record device online');
      });
  }

  private onDisconnect(client: Client): void {
    const session = this.sessions.get(client);
    if (!session) return;
    this.o.pipeline
      .recordStatus(session.device.id, 'offline', 'disconnected', session.device)
      .catch((err: unknown) => {
        this.o.log.error({ err, deviceId: session.device.id }, 'could not record device offline');
      });
  }

  /** Replies to a device on devices/{id}/errors; best effort, QoS 0. */
  replyError(deviceId: string, topic: string, reason: RejectReason, message: string): void {
    const payload = JSON.stringify({ ts: Date.now(), topic, reason, message });
    this.publish(topics.errors(deviceId), payload).catch((err: unknown) => {
      this.o.log.debug({ err, deviceId }, 'could not send error to device');
    });
  }

  private bucket(): TokenBucket {
    const { messagesPerSecond, burst } = this.o.config.mqtt.limits;
    return new TokenBucket(messagesPerSecond, burst, Date.now());
  }

  /** One log line per key per interval: a misbehaving fleet must not flood the log. */
  private throttledLog(key: string, fields: Record<string, unknown>, message: string): void {
    const now = Date.now();
    const last = this.lastLogged.get(key) ?? 0;
    if (now - last < LOG_EVERY_MS) return;
    this.lastLogged.set(key, now);
    if (this.lastLogged.size > 10_000) this.lastLogged.clear();
    this.o.log.warn(fields, message);
  }
}

function dropForwarding(packet: PublishPacket): void {
  packet.topic = DROPPED_TOPIC;
  packet.retain = false;
}

function displayHost(host: string): string {
  return host === '0.0.0.0' || host === '::' ? 'localhost' : host;
}

/**
 * Connections the kernel may hold for us before we accept them (capped by net.core.somaxconn).
 * With Node's default of 511, a 10k-device ramp paced 1,000/s overflowed it whenever the event
 * loop stalled (950 handshakes dropped in one 10 s ramp on PGlite), and each dropped device
 * waits for its TCP stack to retry (1 s, then 3, 7, 15 s...) or runs into its connect timeout.
 */
const LISTEN_BACKLOG = 4096;

async function listen(server: NetServer | HttpServer, port: number, host: string): Promise<{ port: number }> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host, backlog: LISTEN_BACKLOG }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  return { port: typeof address === 'object' && address ? address.port : port };
}

export type { Socket };
