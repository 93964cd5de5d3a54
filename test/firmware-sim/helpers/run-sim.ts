/** Runs the firmware-sim program in this process, as its CLI would, and collects what it printed. */
import { EventEmitter } from 'node:events';
import { PassThrough } from 'node:stream';
import { buildProgram } from '../../../firmware-sim/program.js';

export async function runSim(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number; out: string; err: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  stderr.on('data', (d: Buffer) => {
    err += d.toString();
  });
  let code = 0;
  await buildProgram({
    stdout,
    stderr,
    env,
    now: Date.now,
    signals: new EventEmitter(),
    exit: (c) => {
      throw new Error(`exit ${c}`);
    },
    setExitCode: (c) => {
      code = c;
    },
  }).parseAsync(['node', 'firmware-sim', ...args]);
  return { code, out, err };
}
