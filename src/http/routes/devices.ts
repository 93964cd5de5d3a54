import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { FaultlineError } from '../../errors/catalogue.js';
import { type DeviceRegistry, deviceInput } from '../../registry/devices.js';
import { errorResponses } from '../errors.js';
import {
  deviceCounts,
  deviceIdParams,
  deviceListQuery,
  devicePage,
  deviceRecord,
  importResult,
} from '../schemas.js';

/** A fleet of 100k devices with long owner and batch fields fits well inside this. */
export const CSV_BODY_LIMIT = 64 * 1024 * 1024;

const tags = ['devices'];

export function devicesRoutes(devices: DeviceRegistry) {
  return async function devicesPlugin(scope: FastifyInstance): Promise<void> {
    const app = scope.withTypeProvider<ZodTypeProvider>();

    app.get(
      '/devices',
      {
        config: { roles: ['admin', 'engineer', 'staff'] },
        schema: {
          summary: 'List devices',
          tags,
          querystring: deviceListQuery,
          response: { 200: devicePage, ...errorResponses },
        },
      },
      async (request) => devices.list(request.query),
    );

    app.get(
      '/devices/:id',
      {
        config: { roles: ['admin', 'engineer', 'staff'] },
        schema: {
          summary: 'Get one device',
          tags,
          params: deviceIdParams,
          response: { 200: deviceRecord, ...errorResponses },
        },
      },
      async (request) => {
        const device = await devices.get(request.params.id);
        if (!device) throw new FaultlineError('FL_DEVICE_NOT_FOUND');
        return device;
      },
    );

    app.post(
      '/devices',
      {
        config: { roles: ['admin'] },
        schema: {
          summary: 'Register a device',
          description:
            'The secret is the credential the device presents to the broker; it is stored hashed and never returned.',
          tags,
          body: deviceInput,
          response: { 201: deviceRecord, ...errorResponses },
        },
      },
      async (request, reply) => {
        const device = await devices.add(request.body);
        return reply.code(201).send(device);
      },
    );

    // A scope of its own, so the CSV parser and its large body limit apply to this route only.
    const csvImport: FastifyPluginAsync = async (inner) => {
      const scoped = inner.withTypeProvider<ZodTypeProvider>();
      scoped.addContentTypeParser(
        'text/csv',
        { parseAs: 'string', bodyLimit: CSV_BODY_LIMIT },
        (_req, body, done) => {
          done(null, body);
        },
      );
      scoped.post(
        '/devices/import',
        {
          config: { roles: ['admin'] },
          bodyLimit: CSV_BODY_LIMIT,
          schema: {
            summary: 'Import devices from CSV',
            description:
              'A header row names the columns: id, model and secret are required; firmware, owner_id, ' +
              'owner_locale, region and batch are optional (camelCase names work too). All rows are imported ' +
              'or none: any bad row refuses the file with FL_IMPORT_INVALID, whose details.errors lists the ' +
              'first 100 bad lines and details.errorCount how many there were.',
            tags,
            consumes: ['text/csv'],
            body: z.string().describe('CSV text'),
            response: { 200: importResult, ...errorResponses },
          },
        },
        async (request) => {
          const result = await devices.importCsv(request.body);
          return { imported: result.imported };
        },
      );
    };
    await app.register(csvImport);

    for (const [action, disabled] of [
      ['disable', true],
      ['enable', false],
    ] as const) {
      app.post(
        `/devices/:id/${action}`,
        {
          config: { roles: ['admin'] },
          schema: {
            summary: disabled ? 'Disable a device' : 'Enable a device',
            description: disabled
              ? 'A disabled device can no longer connect to the broker.'
              : 'Lets a disabled device connect again.',
            tags,
            params: deviceIdParams,
            response: { 200: deviceRecord, ...errorResponses },
          },
        },
        async (request) => devices.setDisabled(request.params.id, disabled),
      );
    }

    app.get(
      '/stats/devices',
      {
        config: { roles: ['admin', 'engineer', 'staff'] },
        schema: {
          summary: 'Count devices',
          tags: ['stats'],
          response: { 200: deviceCounts, ...errorResponses },
        },
      },
      async () => devices.counts(),
    );
  };
}
