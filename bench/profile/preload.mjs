/**
 * Preload for a process to be profiled (`node --import bench/profile/preload.mjs`, or in
 * NODE_OPTIONS, where --cpu-prof is not allowed): samples the CPU from the start, and on
 * each SIGUSR2 and at exit writes what it has to $FAULTLINE_PROFILE_DIR/<pid>-<n>.cpuprofile
 * and starts afresh, so a bench can cut the profile at its phase boundaries.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';

const dir = process.env.FAULTLINE_PROFILE_DIR ?? 'profiles';
mkdirSync(dir, { recursive: true });
const session = new Session();
session.connect();
let n = 0;
session.post('Profiler.enable');
session.post('Profiler.setSamplingInterval', { interval: 500 });
session.post('Profiler.start');

/** Synchronous in the same thread, so it also works in an exit handler. */
function cut(restart) {
  session.post('Profiler.stop', (err, result) => {
    if (!err) writeFileSync(join(dir, `${process.pid}-${n++}.cpuprofile`), JSON.stringify(result.profile));
    if (restart) session.post('Profiler.start');
  });
}

process.on('SIGUSR2', () => cut(true));
process.on('exit', () => cut(false));
