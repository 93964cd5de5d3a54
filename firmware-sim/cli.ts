/** Entry point of `firmware-sim` (bin/firmware-sim.js runs the compiled copy). */
import { CommanderError } from 'commander';
import { buildProgram } from './program.js';

const io = {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  now: Date.now,
  signals: process,
  exit: (code: number) => process.exit(code),
  setExitCode: (code: number) => {
    process.exitCode = code;
  },
};

try {
  await buildProgram(io).parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // Help and version exit 0; every usage error exits 2, like the errors the commands raise.
    process.exitCode = err.exitCode === 0 ? 0 : 2;
  } else {
    process.stderr.write(`firmware-sim: ${(err as Error).message}\n`);
    process.exitCode = 2;
  }
}
// Everything is closed by now; a stray handle (a socket the broker never closed) must not keep a finished run alive.
setTimeout(() => process.exit(), 2_000).unref();
