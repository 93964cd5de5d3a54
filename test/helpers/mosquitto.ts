/** A real Mosquitto on a free loopback port, for external-broker mode. */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, waitForPort } from './net.js';
import { startProcess, tempDir } from './process.js';

export interface Mosquitto {
  url: string;
  port: number;
  stop(): Promise<void>;
}

function binary(): string {
  for (const candidate of ['/usr/sbin/mosquitto', '/usr/bin/mosquitto'])
    if (existsSync(candidate)) return candidate;
  return 'mosquitto';
}

export async function startMosquitto(): Promise<Mosquitto> {
  const dir = tempDir('mosquitto');
  const port = await freePort();
  const conf = join(dir.path, 'mosquitto.conf');
  writeFileSync(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous true',
      'persistence false',
      'max_queued_messages 100000',
      // Running as root, mosquitto would switch to the mosquitto user; stay as whoever we are.
      'user root',
      '',
    ].join('\n'),
  );
  const server = startProcess(binary(), ['-c', conf]);
  try {
    await waitForPort(port);
  } catch (err) {
    await server.stop('SIGKILL');
    throw new Error(`mosquitto did not start: ${String(err)}\n${server.output()}`);
  }
  return {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    async stop() {
      await server.stop();
      dir.remove();
    },
  };
}
