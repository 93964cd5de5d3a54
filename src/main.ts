/**
 * The only module that touches the process: signals, exit codes, and a
 * graceful shutdown that flushes everything accepted before exiting.
 *
 * Exit codes (documented in README):
 *   0  stopped cleanly (SIGTERM/SIGINT)
 *   1  runtime failure (a component failed to start or crashed)
 *   2  invalid configuration or command-line usage
 *   3  the data directory is locked by another running process
 *   4  a port is already in use
 */
import { buildApp } from './app.js';
import { loadConfig } from './config/load.js';
import { isFaultlineError } from './errors/catalogue.js';
import { createLogger } from './log/logger.js';

export const EXIT = { ok: 0, failure: 1, config: 2, locked: 3, portInUse: 4 } as const;

export async function runBridge(configFile: string | undefined): Promise<never> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig({ file: configFile ?? process.env.FAULTLINE_CONFIG });
  } catch (err) {
    process.stderr.write(`faultline: ${(err as Error).message}\n`);
    return process.exit(EXIT.config);
  }
  const log = createLogger({ level: config.log.level });
  const app = buildApp(config, { log });

  let shuttingDown = false;
  const shutdown = (signal: string) => {
    if (shuttingDown) {
      log.warn({ signal }, 'second signal: exiting without waiting for the flush');
      log.flush();
      process.exit(EXIT.failure);
    }
    shuttingDown = true;
    log.info({ signal }, 'shutting down: draining connections and flushing');
    app.stop().then(
      () => {
        log.flush();
        process.exit(EXIT.ok);
      },
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        log.flush();
        process.exit(EXIT.failure);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('unhandledRejection', (err) => {
    log.fatal({ err }, 'unhandled promise rejection');
    shutdown('unhandledRejection');
  });

  try {
    await app.start();
  } catch (err) {
    const code = exitCodeFor(err);
    log.fatal({ err }, `start failed: ${(err as Error).message}`);
    await app.stop().catch(() => undefined);
    log.flush();
    process.stderr.write(`faultline: ${(err as Error).message}\n`);
    return process.exit(code);
  }
  // Keep running until a signal arrives.
  return new Promise<never>(() => undefined);
}

function exitCodeFor(err: unknown): number {
  if (isFaultlineError(err)) {
    if (err.code === 'FL_DATA_DIR_LOCKED') return EXIT.locked;
    if (err.code === 'FL_CONFIG_INVALID') return EXIT.config;
  }
  if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') return EXIT.portInUse;
  return EXIT.failure;
}
