/** Starts a whole bridge in-process on loopback port 0 with a temp data dir. */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { type App, type AppAddresses, buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config/load.js';
import { silentLogger } from '../../src/log/logger.js';
import { tempDir } from './process.js';

export const ADMIN_TOKEN = 'test-admin-token-0123456789';

export interface TestBridge {
  app: App;
  addresses: AppAddresses;
  dataDir: string;
  mqttUrl: string;
  wsUrl: string;
  api(path: string, init?: RequestInit & { token?: string }): Promise<Response>;
  /** Registers a device through the registry; returns its secret. */
  addDevice(id: string, extra?: Record<string, unknown>): Promise<string>;
  connect(id: string, secret: string, options?: IClientOptions): Promise<MqttClient>;
  stop(): Promise<void>;
  /** Stops the bridge but keeps its data dir, for restart tests. */
  stopKeepData(): Promise<void>;
}

export async function startBridge(
  overrides: Record<string, unknown> = {},
  existingDataDir?: string,
): Promise<TestBridge> {
  const dir = existingDataDir ? { path: existingDataDir, remove() {} } : tempDir('bridge');
  const base = {
    dataDir: dir.path,
    log: { level: 'silent' },
    mqtt: { host: '127.0.0.1', port: 0, wsPort: 0 },
    http: { host: '127.0.0.1', port: 0, adminToken: ADMIN_TOKEN },
  };
  const config = loadConfig({ env: {}, overrides: merge(base, overrides) });
  const app = buildApp(config, { log: silentLogger() });
  const addresses = await app.start();
  const clients: MqttClient[] = [];
  const mqttUrl = addresses.mqtt?.replace('localhost', '127.0.0.1') ?? '';
  const wsUrl = addresses.ws?.replace('localhost', '127.0.0.1') ?? '';
  const closeClients = async () => {
    await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
  };
  return {
    app,
    addresses,
    dataDir: dir.path,
    mqttUrl,
    wsUrl,
    api(path, init = {}) {
      const { token = ADMIN_TOKEN, headers, ...rest } = init;
      return fetch(`${addresses.http}${path}`, {
        ...rest,
        headers: { authorization: `Bearer ${token}`, ...(headers as Record<string, string> | undefined) },
      });
    },
    async addDevice(id, extra = {}) {
      const secret = `secret-${id}-0123456789`;
      await app.parts.devices.add({
        id,
        model: 'AC-9000',
        secret,
        ownerId: `owner-${id}`,
        ownerLocale: 'zh-CN',
        ...extra,
      });
      return secret;
    },
    async connect(id, secret, options = {}) {
      const client = await mqtt.connectAsync(mqttUrl, {
        clientId: id,
        username: id,
        password: secret,
        reconnectPeriod: 0,
        connectTimeout: 5_000,
        ...options,
      });
      clients.push(client);
      return client;
    },
    async stop() {
      await closeClients();
      await app.stop();
      dir.remove();
    },
    async stopKeepData() {
      await closeClients();
      await app.stop();
    },
  };
}

function merge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const existing = out[k];
    out[k] =
      typeof v === 'object' &&
      v !== null &&
      !Array.isArray(v) &&
      typeof existing === 'object' &&
      existing !== null
        ? merge(existing as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}
