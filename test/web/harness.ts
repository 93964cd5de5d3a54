/**
 * Browser tests of the service desk: a bridge in-process with a short rule, real
 * MQTT telemetry that makes the rule fire, and Debian's Chromium driven by
 * playwright-core (never a downloaded browser).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MqttClient } from 'mqtt';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { tempDir } from '../helpers/process.js';

export const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts', import.meta.url));
export const STAFF_TOKEN = 'desk-staff-token-0123456789abcdef';
export const ENGINEER_TOKEN = 'desk-engineer-token-0123456789abcdef';
export const DESK_TOKENS = [
  { name: 'service-desk', token: STAFF_TOKEN, role: 'staff' },
  { name: 'field-engineers', token: ENGINEER_TOKEN, role: 'engineer' },
];

export const RULE_ID = 'desk-ac-overheat';
const rules = (guide: string | false) => `apiVersion: faultline/v1
rules:
  - id: ${RULE_ID}
    title: "Compressor overheating on {{device.id}} ({{value}} °C)"
    description: "compressor_temp above {{params.threshold}} °C for {{duration}} while running"
    scope: { models: "AC-*" }
    severity: major
    category: hardware_fault
    actions: { ticket: true, guide: ${guide === false ? 'false' : guide}, autoClose: false }
    params: { threshold: 95, clearBelow: 90 }
    when:
      threshold: { metric: compressor_temp, op: ">", value: $threshold }
    gate:
      threshold: { metric: compressor_freq, op: ">", value: 0 }
    for: 2s
    clear:
      when:
        threshold: { metric: compressor_temp, op: "<", value: $clearBelow }
      for: 1s
`;

/**
 * A rules directory holding the one short rule; seconds, so it fires within a test. `guide` names
 * the guide pushed to the owner when it opens a ticket.
 */
export function rulesDir(guide: string | false = false): { path: string; remove(): void } {
  const dir = tempDir('desk-rules');
  mkdirSync(dir.path, { recursive: true });
  writeFileSync(join(dir.path, 'ac.yaml'), rules(guide));
  return dir;
}

const ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface Browser {
  context: BrowserContext;
  /** A new tab: its own sessionStorage, so its own sign-in. Page errors are collected. */
  page(): Promise<Page>;
  /** Uncaught errors in any page so far. */
  errors: string[];
  close(): Promise<void>;
}

export async function launchBrowser(options: { locale?: string } = {}): Promise<Browser> {
  const userDataDir = mkdtempSync(join(tmpdir(), 'faultline-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ARGS,
    locale: options.locale ?? 'en-GB',
    viewport: { width: 1400, height: 1000 },
    timezoneId: 'Asia/Shanghai',
  });
  const errors: string[] = [];
  return {
    context,
    errors,
    async page() {
      const page = await context.newPage();
      page.on('pageerror', (err) => errors.push(err.message));
      return page;
    },
    async close() {
      await context.close();
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

export async function signIn(page: Page, base: string, token: string, path = '/desk/'): Promise<void> {
  await page.goto(`${base}${path}`);
  await page.locator('input[name=token]').fill(token);
  await page.locator('form[data-testid=login] button[type=submit]').click();
  await page.locator('[data-testid=who]').waitFor();
}

export interface Heating {
  /** Resolves with the last sequence number once stop() was called. */
  done: Promise<number>;
  stop(): void;
}

/**
 * An air conditioner whose compressor runs hot, one sample every 200 ms, from `from` °C up by 1.5
 * per sample to 97.5, until stopped. Runs in the background so a test can wait on the page.
 */
export function heat(client: MqttClient, id: string, from = 88, firstSeq = 1): Heating {
  let stopped = false;
  const done = (async () => {
    let seq = firstSeq - 1;
    let temp = from;
    while (!stopped) {
      temp = Math.min(97.5, temp + 1.5);
      await client.publishAsync(
        `devices/${id}/telemetry`,
        JSON.stringify({
          ts: Date.now(),
          seq: ++seq,
          metrics: { compressor_temp: temp, compressor_freq: 62, mode: 'cool' },
        }),
        { qos: 1 },
      );
      await new Promise((r) => setTimeout(r, 200));
    }
    return seq;
  })();
  return {
    done,
    stop() {
      stopped = true;
    },
  };
}

export function artifact(name: string): string {
  mkdirSync(ARTIFACTS, { recursive: true });
  return join(ARTIFACTS, name);
}
