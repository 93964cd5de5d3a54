/**
 * What a device may send by default. The bridge's config can change these per
 * deployment; firmware (and firmware-sim) should stay within the defaults
 * unless told otherwise.
 */
export const DEVICE_LIMITS = {
  /** Larger PUBLISH packets are dead-lettered (the connection stays up). */
  maxPacketBytes: 262_144,
  /** Sustained messages per second per device; more are dropped and counted. */
  messagesPerSecond: 50,
  /** Burst allowance per device, for uploading an offline buffer. */
  burst: 2_000,
  /** Samples further ahead of server time than this are dead-lettered. */
  maxFutureSkewMs: 300_000,
} as const;
