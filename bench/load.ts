/**
 * An MQTT load generator that runs in its own process, so that the process
 * under test is charged only for its own CPU time. The parent forks this file
 * (see spawnLoad) and talks to it over IPC:
 *
 *   parent → { connect: LoadPlan }   child → { connected: n }
 *   parent → { go: true }            child → { done: { sent, seconds } }
 */
import { fork } from 'node:child_process';
import mqtt, { type MqttClient } from 'mqtt';

export interface LoadPlan {
  url: string;
  clients: Array<{ clientId: string; username?: string; password?: string; topic: string }>;
  messagesPerClient: number;
  qos: 0 | 1;
  /** QoS 1 messages each client keeps in flight, like firmware with an outbox. */
  window: number;
}

type FromChild = { connected: number } | { done: { sent: number; seconds: number } } | { error: string };

function payload(seq: number): string {
  return JSON.stringify({
    ts: Date.now(),
    seq,
    metrics: { compressor_temp: 70 + (seq % 20), compressor_freq: 55, current: 6.2, mode: 'cool' },
  });
}

async function run(plan: LoadPlan, go: Promise<void>): Promise<{ sent: number; seconds: number }> {
  const clients: MqttClient[] = [];
  for (const c of plan.clients) {
    const { topic: _t, ...opts } = c;
    clients.push(await mqtt.connectAsync(plan.url, { ...opts, reconnectPeriod: 0 }));
  }
  process.send?.({ connected: clients.length } satisfies FromChild);
  await go;
  const t0 = performance.now();
  await Promise.all(
    clients.map(async (client, i) => {
      const topic = plan.clients[i]!.topic;
      let next = 0;
      const worker = async () => {
        while (next < plan.messagesPerClient) {
          const seq = ++next;
          if (plan.qos === 1) await client.publishAsync(topic, payload(seq), { qos: 1 });
          else {
            client.publish(topic, payload(seq), { qos: 0 });
            // Yield now and then so QoS 0 is paced by the socket, not queued unboundedly in memory.
            if (seq % 200 === 0) await new Promise((r) => setImmediate(r));
          }
        }
      };
      await Promise.all(Array.from({ length: plan.qos === 1 ? plan.window : 1 }, worker));
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  await Promise.all(clients.map((c) => c.endAsync()));
  return { sent: plan.clients.length * plan.messagesPerClient, seconds };
}

/** Handle on a forked load generator. */
export interface Load {
  /** Resolves once every client is connected. */
  connected: Promise<number>;
  /** Starts publishing; resolves when every message was sent (QoS 1: acknowledged). */
  go(): Promise<{ sent: number; seconds: number }>;
  kill(): void;
}

export function spawnLoad(plan: LoadPlan): Load {
  const child = fork(new URL(import.meta.url).pathname, ['--child'], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code) => reject(new Error(`load generator exited with ${code}`))),
  );
  exited.catch(() => {});
  const next = <K extends 'connected' | 'done'>(key: K) =>
    Promise.race([
      exited,
      new Promise<Extract<FromChild, Record<K, unknown>>[K]>((resolve, reject) => {
        const on = (m: FromChild) => {
          if ('error' in m) reject(new Error(m.error));
          else if (key in m) resolve((m as unknown as Record<K, never>)[key]);
          else return;
          child.off('message', on);
        };
        child.on('message', on);
      }),
    ]);
  child.send({ connect: plan });
  return {
    connected: next('connected'),
    go: () => {
      const done = next('done');
      child.send({ go: true });
      return done;
    },
    kill: () => child.kill('SIGKILL'),
  };
}

if (process.argv.includes('--child')) {
  let release: () => void = () => {};
  const go = new Promise<void>((r) => {
    release = r;
  });
  process.on('message', (m: { connect?: LoadPlan; go?: true }) => {
    if (m.go) release();
    if (m.connect)
      run(m.connect, go).then(
        (done) => {
          process.send?.({ done } satisfies FromChild, () => process.exit(0));
        },
        (err: Error) => {
          process.send?.({ error: err.message } satisfies FromChild, () => process.exit(1));
        },
      );
  });
}
