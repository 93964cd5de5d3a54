/**
 * Request and response schemas of the API. Response schemas list fields one by
 * one: the serializer drops anything else, so a secret or hash a store returns
 * by mistake never reaches a caller. No schema carries a registry id: the zod
 * provider would then publish an unused "Input" twin of each in the document.
 */
import { z } from 'zod';
import { DEVICE_ID_PATTERN, OWNER_ID_PATTERN, REJECT_REASONS } from '../contract/index.js';

export const deviceId = z.string().regex(DEVICE_ID_PATTERN, 'not a valid device id');

export const deviceIdParams = z.object({ id: deviceId });

const limit = z.coerce
  .number()
  .int()
  .min(1)
  .max(1000)
  .optional()
  .describe('page size; the store applies its default when absent');
const cursor = z.string().min(1).max(512).optional().describe('nextCursor of the previous page');
const booleanQuery = z
  .enum(['true', 'false'])
  .transform((v) => v === 'true')
  .optional();

export const deviceListQuery = z.object({
  limit,
  cursor,
  model: z.string().min(1).max(128).optional(),
  ownerId: z.string().regex(OWNER_ID_PATTERN, 'not a valid owner id').optional(),
  disabled: booleanQuery.describe('true: only disabled devices; false: only enabled ones'),
});

export const deviceRecord = z.object({
  id: z.string(),
  model: z.string(),
  firmware: z.string().nullable(),
  ownerId: z.string().nullable(),
  ownerLocale: z.string().nullable(),
  region: z.string().nullable(),
  batch: z.string().nullable(),
  disabled: z.boolean(),
  createdAt: z.string().describe('ISO 8601'),
  lastSeenAt: z.string().nullable().describe('ISO 8601; null until the device first connects'),
  online: z.boolean(),
});

export const devicePage = z.object({
  items: z.array(deviceRecord),
  nextCursor: z.string().nullable().describe('pass as cursor for the next page; null on the last page'),
});

export const importResult = z.object({ imported: z.number().int() });

export const deviceCounts = z.object({
  total: z.number().int(),
  online: z.number().int(),
  disabled: z.number().int(),
});

export const deadLetterQuery = z.object({
  limit,
  cursor,
  // A string, not the enum of REJECT_REASONS: the store keeps whatever reason it was given,
  // and a filter must be able to find every one of them.
  reason: z
    .string()
    .min(1)
    .max(128)
    .optional()
    .describe(`e.g. ${REJECT_REASONS.join(', ')}`),
  deviceId: deviceId.optional(),
});

export const deadLetter = z.object({
  id: z.string(),
  receivedAt: z.string().describe('ISO 8601'),
  deviceId: z.string().nullable(),
  topic: z.string(),
  reason: z.string(),
  message: z.string().describe('why the message was refused'),
  payloadBase64: z.string().describe('the payload as received'),
  payloadPreview: z.string().describe('the payload as UTF-8, truncated, for reading'),
  payloadBytes: z.number().int(),
});

export const deadLetterPage = z.object({
  items: z.array(deadLetter),
  nextCursor: z.string().nullable(),
});
