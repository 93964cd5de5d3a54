/** Where the bridge is: flags first, then the bridge's own environment variables, then localhost defaults. */

export interface TargetFlags {
  broker?: string | undefined;
  api?: string | undefined;
  token?: string | undefined;
}

export interface Target {
  brokerUrl: string;
  apiUrl: string;
  token: string | undefined;
}

function port(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0 || n > 65_535) throw new Error(`${name}=${raw} is not a port`);
  return n;
}

export function resolveTarget(flags: TargetFlags, env: NodeJS.ProcessEnv = process.env): Target {
  // 127.0.0.1 rather than "localhost": Node may resolve that to ::1 first, where a bridge bound to 0.0.0.0 is absent.
  const brokerUrl = flags.broker ?? `mqtt://127.0.0.1:${port(env, 'FAULTLINE_MQTT_PORT', 1883)}`;
  const apiUrl = (flags.api ?? `http://127.0.0.1:${port(env, 'FAULTLINE_HTTP_PORT', 8080)}`).replace(
    /\/+$/,
    '',
  );
  const token = flags.token ?? (env.FAULTLINE_ADMIN_TOKEN || undefined);
  return { brokerUrl, apiUrl, token };
}
