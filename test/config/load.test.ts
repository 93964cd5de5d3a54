import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { FaultlineError } from '../../src/errors/catalogue.js';
import { tempDir } from '../helpers/process.js';

const dir = tempDir('config');
afterAll(() => dir.remove());

function file(name: string, text: string): string {
  const path = join(dir.path, name);
  writeFileSync(path, text);
  return path;
}

function failure(fn: () => unknown): FaultlineError {
  try {
    fn();
  } catch (err) {
    if (err instanceof FaultlineError) return err;
    throw err;
  }
  throw new Error('expected a configuration error');
}

describe('loadConfig', () => {
  it('gives a runnable embedded configuration with no file', () => {
    const c = loadConfig({ env: {} });
    expect(c.mqtt.mode).toBe('embedded');
    expect(c.mqtt.port).toBe(1883);
    expect(c.mqtt.wsPort).toBe(8083);
    expect(c.http.port).toBe(8080);
    expect(c.database.url).toBeUndefined();
    expect(c.mqtt.allowAnonymous).toBe(false);
  });

  it('applies environment overrides over the file', () => {
    const path = file('a.yaml', 'mqtt:\n  port: 1999\nhttp:\n  port: 9000\n');
    const c = loadConfig({
      file: path,
      env: {
        FAULTLINE_MQTT_PORT: '2883',
        FAULTLINE_WS_PORT: '9001',
        FAULTLINE_HTTP_PORT: '9090',
        FAULTLINE_DATA_DIR: '/tmp/x',
        FAULTLINE_DATABASE_URL: 'postgres://u@h/db',
        FAULTLINE_ADMIN_TOKEN: 'a-long-enough-admin-token',
      },
    });
    expect(c.mqtt.port).toBe(2883);
    expect(c.mqtt.wsPort).toBe(9001);
    expect(c.http.port).toBe(9090);
    expect(c.dataDir).toBe('/tmp/x');
    expect(c.database.url).toBe('postgres://u@h/db');
    expect(c.http.adminToken).toBe('a-long-enough-admin-token');
  });

  it('names every bad key with its file:line:col', () => {
    const path = file(
      'bad.yaml',
      [
        'mqtt:',
        '  port: "not a port"',
        '  limits:',
        '    maxPacketBytes: 12',
        'htttp:',
        '  port: 1',
        '',
      ].join('\n'),
    );
    const err = failure(() => loadConfig({ file: path, env: {} }));
    expect(err.code).toBe('FL_CONFIG_INVALID');
    expect(err.message).toContain(`${path}:2:9: mqtt.port:`);
    expect(err.message).toContain(`${path}:4:21: mqtt.limits.maxPacketBytes:`);
    expect(err.message).toMatch(/unrecognized key.*htttp|htttp/i);
  });

  it('says which environment variable is wrong', () => {
    const err = failure(() => loadConfig({ env: { FAULTLINE_HTTP_PORT: 'eighty' } }));
    expect(err.message).toContain('env FAULTLINE_HTTP_PORT: http.port');
  });

  it('reports YAML syntax errors with a position', () => {
    const path = file('syntax.yaml', 'mqtt:\n  port: [1883\n');
    const err = failure(() => loadConfig({ file: path, env: {} }));
    expect(err.message).toMatch(new RegExp(`${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+`));
  });

  it('returns a frozen object', () => {
    const c = loadConfig({ env: {} });
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.mqtt.limits)).toBe(true);
    expect(() => {
      (c.mqtt as { port: number }).port = 1;
    }).toThrow(TypeError);
  });

  it('accepts the committed annotated example', () => {
    const c = loadConfig({ file: join(process.cwd(), 'faultline.example.yaml'), env: {} });
    expect(c.mqtt.mode).toBe('embedded');
  });
});
