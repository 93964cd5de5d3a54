/**
 * The bridge as operators run it: a real `faultline start` process, stopped by
 * its PID, with the CLI working beside it.
 */
import mqtt from 'mqtt';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeRecord } from '../../src/ingest/record.js';
import { WriteAheadLog } from '../../src/wal/index.js';
import { runCli, startBridgeProcess } from '../helpers/cli.js';
import { tempDir } from '../helpers/process.js';

const dirs: Array<{ remove(): void }> = [];
afterAll(() => {
  for (const d of dirs) d.remove();
});
function dataDir(): string {
  const d = tempDir('proc');
  dirs.push(d);
  return d.path;
}

describe('faultline start', { timeout: 120_000 }, () => {
  it('exits 2 and names each bad key when the config is invalid', async () => {
    const result = await runCli(['start'], {
      FAULTLINE_HTTP_PORT: 'eighty',
      FAULTLINE_MQTT_MODE: 'sideways',
      FAULTLINE_DATA_DIR: dataDir(),
    });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('env FAULTLINE_HTTP_PORT: http.port');
    expect(result.stderr).toContain('env FAULTLINE_MQTT_MODE: mqtt.mode');
  });

  it('logs each component with its address, refuses a second process on the same data dir, and stops on SIGTERM with exit 0', async () => {
    const dir = dataDir();
    const bridge = await startBridgeProcess(dir);
    try {
      const out = bridge.server.output();
      expect(out).toContain(`MQTT broker listening on mqtt://127.0.0.1:${bridge.mqttPort}`);
      expect(out).toContain(`MQTT over WebSocket on ws://127.0.0.1:${bridge.wsPort}`);
      expect(out).toContain(`HTTP API on http://127.0.0.1:${bridge.httpPort}/api/v1`);
      expect(out).not.toContain('process-test-admin-token');

      const second = await runCli(['start'], {
        ...bridge.env,
        FAULTLINE_MQTT_PORT: '0',
        FAULTLINE_HTTP_PORT: '0',
        FAULTLINE_WS_PORT: '0',
      });
      expect(second.code).toBe(3);
      expect(second.stderr).toContain(`is in use by pid ${bridge.server.pid}`);
    } finally {
      const code = await bridge.server.stop('SIGTERM');
      expect(code).toBe(0);
      expect(bridge.server.output()).toContain('"msg":"stopped"');
    }
  });
});

describe('faultline devices beside a running bridge', { timeout: 120_000 }, () => {
  it('registers through the API while the bridge holds the database, and directly when it does not', async () => {
    const dir = dataDir();
    // No bridge: the CLI opens the embedded database itself.
    const offline = await runCli(
      [
        'devices',
        'add',
        '--id',
        'cli-ac-1',
        '--model',
        'AC-9000',
        '--owner',
        'o-1',
        '--secret',
        'cli-secret-0123456789',
      ],
      { FAULTLINE_DATA_DIR: dir },
    );
    expect(offline.code).toBe(0);
    expect(JSON.parse(offline.stdout)).toMatchObject({ id: 'cli-ac-1', model: 'AC-9000', ownerId: 'o-1' });
    expect(offline.stdout).not.toContain('cli-secret');

    const bridge = await startBridgeProcess(dir);
    try {
      const online = await runCli(
        ['devices', 'add', '--id', 'cli-ac-2', '--model', 'AC-9000', '--secret', 'cli-secret-abcdefghij'],
        bridge.env,
      );
      expect(online.stderr).toBe('');
      expect(online.code).toBe(0);
      // Both devices authenticate against the running broker.
      for (const [id, secret] of [
        ['cli-ac-1', 'cli-secret-0123456789'],
        ['cli-ac-2', 'cli-secret-abcdefghij'],
      ] as const) {
        const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${bridge.mqttPort}`, {
          clientId: id,
          username: id,
          password: secret,
          reconnectPeriod: 0,
        });
        await client.endAsync();
      }
      const dup = await runCli(
        ['devices', 'add', '--id', 'cli-ac-2', '--model', 'AC-9000', '--secret', 'cli-secret-abcdefghij'],
        bridge.env,
      );
      expect(dup.code).toBe(1);
      expect(dup.stderr).toContain('FL_DEVICE_EXISTS');

      const csv =
        'id,model,firmware,owner_id,owner_locale,region,batch,secret\ncli-rv-1,RV-200,1.2.0,o-2,en,eu,B7,rv-secret-0123456789\n';
      const file = `${dir}/fleet.csv`;
      await import('node:fs/promises').then((fs) => fs.writeFile(file, csv));
      const imported = await runCli(['devices', 'import', file], bridge.env);
      expect(imported.code).toBe(0);
      expect(JSON.parse(imported.stdout)).toEqual({ imported: 1 });

      const letters = await runCli(['deadletters'], bridge.env);
      expect(letters.code).toBe(0);
      expect(JSON.parse(letters.stdout)).toMatchObject({ items: [] });
    } finally {
      await bridge.server.stop();
    }
  });
});

describe('durable acceptance across a crash', { timeout: 120_000 }, () => {
  it('keeps every acknowledged QoS 1 message when the bridge is killed mid-stream', async () => {
    const dir = dataDir();
    await runCli(
      ['devices', 'add', '--id', 'crash-ac', '--model', 'AC-9000', '--secret', 'crash-secret-0123456789'],
      { FAULTLINE_DATA_DIR: dir },
    );
    const bridge = await startBridgeProcess(dir);
    const acked: number[] = [];
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${bridge.mqttPort}`, {
      clientId: 'crash-ac',
      username: 'crash-ac',
      password: 'crash-secret-0123456789',
      reconnectPeriod: 0,
    });
    client.on('error', () => undefined);
    const t0 = Date.now() - 3_600_000;
    let seq = 0;
    const publishing = (async () => {
      while (seq < 5_000) {
        const s = ++seq;
        try {
          await client.publishAsync(
            'devices/crash-ac/telemetry',
            JSON.stringify({ ts: t0 + s, seq: s, metrics: { compressor_temp: 80 } }),
            { qos: 1 },
          );
          acked.push(s);
        } catch {
          return;
        }
      }
    })();
    // Kill (SIGKILL: no flush, no shutdown hook) once a few hundred messages were acknowledged.
    const { until } = await import('../helpers/net.js');
    await until('some acks', () => acked.length >= 300, 20_000);
    await bridge.server.stop('SIGKILL');
    // Ending the client fails its in-flight publishes, which ends the loop.
    await client.endAsync(true);
    await publishing;
    expect(acked.length).toBeGreaterThanOrEqual(300);

    // Every acknowledged sequence number is in the write-ahead log, exactly once.
    const wal = await WriteAheadLog.open({ dir: `${dir}/wal` });
    const stored = new Map<number, number>();
    let from = 0;
    for (;;) {
      const records = await wal.read(from, 1000);
      if (records.length === 0) break;
      for (const r of records) {
        from = r.lsn;
        const rec = decodeRecord(r.payload);
        if (rec.kind !== 'telemetry') continue;
        const s = (JSON.parse(rec.payload.toString()) as { seq: number }).seq;
        stored.set(s, (stored.get(s) ?? 0) + 1);
      }
    }
    await wal.close();
    const missing = acked.filter((s) => !stored.has(s));
    expect(missing).toEqual([]);
    expect([...stored.values()].every((n) => n === 1)).toBe(true);

    // The bridge starts again on the same data dir (the dead process's lock is taken over).
    const again = await startBridgeProcess(dir);
    expect(again.server.output()).toContain('stale data dir lock');
    await again.server.stop();
  });
});
