/** The service desk as the composition root sees it: its HTTP plugins. */
import type { FastifyInstance } from 'fastify';
import type { Queryable } from '../db/db.js';
import type { Logger } from '../log/logger.js';
import { deskRoutes } from './routes.js';
import { webStaticRoutes } from './static.js';

export interface WebOptions {
  db: Queryable;
  log: Logger;
  now?: () => number;
  /** Directories to serve the built page from; default web/dist beside the source or compiled tree. */
  distCandidates?: string[];
}

export function webRoutes(options: WebOptions): Array<(app: FastifyInstance) => Promise<void>> {
  return [
    deskRoutes({ db: options.db, ...(options.now ? { now: options.now } : {}) }),
    webStaticRoutes({
      log: options.log,
      ...(options.distCandidates ? { candidates: options.distCandidates } : {}),
    }),
  ];
}
