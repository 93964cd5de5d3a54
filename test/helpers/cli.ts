/** Runs the faultline CLI as a real child process (through tsx, so no build is needed). */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { freePort, until } from './net.js';
import { type Server, startProcess } from './process.js';

export const CLI = join(process.cwd(), 'src/cli.ts');
const NODE_ARGS = ['--import', 'tsx', CLI];

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], env: NodeJS.ProcessEnv = {}, input?: string): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...NODE_ARGS, ...args], {
      env: { ...process.env, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

export interface BridgeProcess {
  server: Server;
  env: NodeJS.ProcessEnv;
  mqttPort: number;
  httpPort: number;
  wsPort: number;
}

/** Starts `faultline start` on free loopback ports and waits for its "ready" log line. */
export async function startBridgeProcess(
  dataDir: string,
  extraEnv: NodeJS.ProcessEnv = {},
): Promise<BridgeProcess> {
  const [mqttPort, httpPort, wsPort] = [await freePort(), await freePort(), await freePort()];
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    FAULTLINE_DATA_DIR: dataDir,
    FAULTLINE_MQTT_HOST: '127.0.0.1',
    FAULTLINE_HTTP_HOST: '127.0.0.1',
    FAULTLINE_MQTT_PORT: String(mqttPort),
    FAULTLINE_HTTP_PORT: String(httpPort),
    FAULTLINE_WS_PORT: String(wsPort),
    FAULTLINE_ADMIN_TOKEN: 'process-test-admin-token',
    ...extraEnv,
  };
  const server = startProcess(process.execPath, [...NODE_ARGS, 'start'], { env });
  await until(
    'bridge ready',
    () => server.output().includes('"msg":"ready"') || server.child.exitCode !== null,
    30_000,
  );
  if (server.child.exitCode !== null)
    throw new Error(`bridge exited with ${server.child.exitCode}:\n${server.output()}`);
  return { server, env, mqttPort, httpPort, wsPort };
}
