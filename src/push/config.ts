/** The guides: and push: configuration sections (defaults live here, like tickets'). */
import { z } from 'zod';
import { SIGNAL_WORDS } from '../guides/model.js';
import { isTimeZone, QUIET_HOURS_PATTERN } from '../owners/fields.js';

export const guidesConfigSchema = z
  .strictObject({
    paths: z.array(z.string()).min(1).default(['guides']).describe('guide files or directories (*.md)'),
    watch: z
      .boolean()
      .default(true)
      .describe('hot-reload on change; a broken change is refused and the old guides stay'),
    defaultLocale: z
      .string()
      .default('zh-CN')
      .describe('last-resort locale, and the preferred variant of its language (zh-CN for a bare zh)'),
  })
  .prefault({});

export type GuidesConfig = z.infer<typeof guidesConfigSchema>;

const gatewaySchema = z.strictObject({
  url: z.string().url().describe('HTTPS endpoint of the FCM/APNs/vendor relay; gets a signed JSON POST'),
  secret: z.string().min(16, 'the gateway secret must be at least 16 characters').describe('HMAC key'),
  timeoutMs: z.number().int().min(100).max(120_000).default(10_000),
});

export const pushConfigSchema = z
  .strictObject({
    enabled: z.boolean().default(true).describe('push guides and surveys to owner apps'),
    ttlHours: z
      .number()
      .min(1)
      .max(24 * 28)
      .default(72)
      .describe('an undelivered notification is re-sent until then, and dropped after'),
    rateLimit: z
      .strictObject({
        perHour: z.number().int().min(1).default(3).describe('notifications per owner per rolling hour'),
        perIncidentMinutes: z
          .number()
          .int()
          .min(0)
          .default(60)
          .describe('at most one notification per ticket fingerprint within this; later ones replace it'),
      })
      .prefault({}),
    quietHours: z
      .string()
      .regex(QUIET_HOURS_PATTERN)
      .default('22:00-07:00')
      .describe("owners' default quiet hours, local time; an owner's own setting wins"),
    defaultTimezone: z
      .string()
      .refine(isTimeZone, 'an IANA time zone such as Asia/Shanghai')
      .default('Asia/Shanghai'),
    bypass: z
      .array(z.enum(SIGNAL_WORDS))
      .default(['DANGER'])
      .describe('signal words sent at once, through quiet hours and rate limits'),
    fixedRecovers: z
      .record(z.string(), z.boolean())
      .default({})
      .describe(
        'rule id -> whether a "fixed" receipt marks the ticket recovered; default: the guide ownerFixable',
      ),
    survey: z
      .strictObject({
        enabled: z.boolean().default(true).describe('ask the owner after a ticket is resolved'),
      })
      .prefault({}),
    gateway: gatewaySchema.optional().describe('push gateway webhook; unset: in-app MQTT only'),
    publicUrl: z
      .string()
      .url()
      .optional()
      .describe('base URL apps reach the HTTP API at, for guide links; unset: links are paths'),
    linkSecret: z
      .string()
      .min(16)
      .optional()
      .describe(
        'key of signed guide links; unset: generated into <dataDir>/push-link-key (set it when several processes share a database)',
      ),
    linkTtlHours: z
      .number()
      .min(1)
      .max(24 * 90)
      .default(168)
      .describe('how long a guide link works'),
    pollMs: z.number().int().min(10).default(1_000).describe('how often held notifications are looked at'),
  })
  .prefault({});

export type PushConfig = z.infer<typeof pushConfigSchema>;
export type PushConfigInput = z.input<typeof pushConfigSchema>;

export function pushConfig(input: PushConfigInput = {}): PushConfig {
  return pushConfigSchema.parse(input);
}

/** The outbox receiver name of the push gateway (tickets' receivers are configured by name). */
export const GATEWAY_RECEIVER = 'push-gateway';
