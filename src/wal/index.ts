export {
  WalClosedError,
  type WalCommitInfo,
  WalCorruptionError,
  type WalCursor,
  type WalEvents,
  type WalOptions,
  type WalRecord,
  type WalRecovery,
  type WalStats,
  WriteAheadLog,
} from './log.js';
