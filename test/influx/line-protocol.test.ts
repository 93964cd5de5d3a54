/**
 * Line protocol encoding, checked twice: the exact text, and a round trip through
 * a real influxd for the values that are easy to get wrong (separators in tags,
 * backslashes, quotes and line breaks in strings, field names InfluxDB reserves).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  deviceTags,
  escapeTag,
  faultLine,
  fieldName,
  quoteString,
  statusLine,
  telemetryLine,
} from '../../src/influx/line-protocol.js';
import { classify, endpoint, serverMessage } from '../../src/influx/writer.js';
import { type Influxd, rows, startInfluxd } from '../helpers/influxd.js';

describe('line protocol', () => {
  it('escapes tags, omits missing ones and sorts them', () => {
    expect(
      deviceTags({ id: 'ac-1', model: 'AC 9000', firmware: null, region: 'eu,west=1', batch: 'B 7' }),
    ).toBe(',batch=B\\ 7,device=ac-1,model=AC\\ 9000,region=eu\\,west\\=1');
    expect(deviceTags({ id: 'ac-2', model: null, firmware: '', region: null, batch: null })).toBe(
      ',device=ac-2',
    );
    expect(escapeTag('a\\b')).toBe('a\\b');
    expect(escapeTag('ends\\')).toBe('ends');
    expect(escapeTag('x\\,y')).toBe('x\\,y');
    expect(escapeTag('two\nlines')).toBe('two\\ lines');
  });

  it('writes numbers as floats, booleans as booleans and strings quoted', () => {
    expect(
      telemetryLine(',device=d', 1_700_000_000_123, {
        t: 20,
        f: -0.5,
        z: -0,
        on: true,
        mode: 'say "hi" \\o/',
      }),
    ).toBe('telemetry,device=d t=20,f=-0.5,z=0,on=true,mode="say \\"hi\\" \\\\o/" 1700000000123');
    expect(telemetryLine(',device=d', 1, { big: 1e21 })).toBe('telemetry,device=d big=1e+21 1');
    expect(faultLine(',device=d', 5, 'E05', undefined)).toBe('faults,device=d code="E05" 5');
    expect(faultLine(',device=d', 5, 'E05', 'a\nb')).toBe('faults,device=d code="E05",detail="a\nb" 5');
    expect(statusLine(',device=d', 9, { state: 'offline', reason: 'connection lost', firmware: '1.2' })).toBe(
      'status,device=d state="offline",reason="connection lost",reported_firmware="1.2" 9',
    );
    expect(quoteString('')).toBe('""');
  });

  it('renames metrics InfluxDB reserves or that collide with a tag', () => {
    expect(['time', 'model', 'device', 'firmware', 'region', 'batch', 'temp'].map(fieldName)).toEqual([
      'time_',
      'model_',
      'device_',
      'firmware_',
      'region_',
      'batch_',
      'temp',
    ]);
  });
});

describe('answers from InfluxDB', () => {
  it('maps each status to what the sink does', () => {
    expect(classify(204, '')).toEqual({ kind: 'ok', status: 204 });
    // Early InfluxDB 3 answered a partial write with 201 and the refused lines in the body.
    expect(classify(201, 'line 3: bad field', null, '{"error":"line 3: bad field"}')).toMatchObject({
      kind: 'rejected',
      status: 201,
    });
    expect(classify(201, 'Created', null, '')).toEqual({ kind: 'ok', status: 201 });
    expect(classify(400, 'partial write')).toEqual({
      kind: 'rejected',
      status: 400,
      message: 'partial write',
    });
    expect(classify(422, 'unprocessable')).toMatchObject({ kind: 'rejected' });
    expect(classify(413, 'too large')).toMatchObject({ kind: 'too_large' });
    expect(classify(429, 'slow down', '3')).toEqual({
      kind: 'retry',
      reason: 'throttled',
      status: 429,
      message: 'slow down',
      retryAfterMs: 3000,
    });
    expect(classify(503, 'x')).toMatchObject({ kind: 'retry', reason: 'server' });
    expect(classify(401, 'x')).toMatchObject({ kind: 'retry', reason: 'auth' });
    expect(classify(404, 'database not found')).toMatchObject({ kind: 'retry', reason: 'not_found' });
  });

  it("reads the server's message from 1.x, 2.x and plain-text bodies", () => {
    expect(serverMessage('{"error":"field type conflict"}', 'Bad Request')).toBe('field type conflict');
    expect(serverMessage('{"code":"invalid","message":"partial write"}', 'Bad Request')).toBe(
      'partial write',
    );
    expect(serverMessage('404 page not found\n', 'Not Found')).toBe('404 page not found');
    expect(serverMessage('', 'Bad Gateway')).toBe('Bad Gateway');
  });

  it('keeps a reverse-proxy path prefix and drops credentials from the URL', () => {
    expect(endpoint('https://u:p@influx.example/prefix/', '/write', { db: 'a b', rp: undefined })).toBe(
      'https://influx.example/prefix/write?db=a+b',
    );
  });
});

describe('round trip through influxd 1.6.7', () => {
  let influxd: Influxd;
  beforeAll(async () => {
    influxd = await startInfluxd();
    await influxd.query('CREATE DATABASE lp');
  });
  afterAll(async () => {
    await influxd?.stop();
  });

  it('reads back exactly what was encoded', async () => {
    const tags = deviceTags({
      id: 'rt-1',
      model: 'AC=9000, "pro"',
      firmware: 'v1\\beta',
      region: '华东 east',
      batch: 'B\\',
    });
    const metrics = {
      time: 1.5,
      model: 2,
      mode: 'line1\nline2 "quoted" back\\slash',
      on: false,
      temp: 21.25,
    };
    const body = [
      telemetryLine(tags, 1_700_000_000_000, metrics),
      faultLine(tags, 1_700_000_000_001, 'E-05.x', 'detail, with = and "quotes"\\'),
    ].join('\n');
    const res = await fetch(`${influxd.url}/write?db=lp&precision=ms`, { method: 'POST', body });
    expect(res.status).toBe(204);
    const telemetry = rows(await influxd.query('SELECT * FROM telemetry', 'lp'));
    expect(telemetry).toEqual([
      {
        time: 1_700_000_000_000,
        device: 'rt-1',
        model: 'AC=9000, "pro"',
        firmware: 'v1\\beta',
        region: '华东 east',
        batch: 'B',
        time_: 1.5,
        model_: 2,
        mode: 'line1\nline2 "quoted" back\\slash',
        on: false,
        temp: 21.25,
      },
    ]);
    const faults = rows(await influxd.query('SELECT code, detail FROM faults', 'lp'));
    expect(faults).toEqual([
      { time: 1_700_000_000_001, code: 'E-05.x', detail: 'detail, with = and "quotes"\\' },
    ]);
  });
});
