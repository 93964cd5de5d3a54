/** The rule engine library: what the integrator codes against. */
export { type CheckWarning, checkRule } from './check.js';
export { runRulesCheck, runRulesTest } from './cli.js';
export type { LoadedRule } from './compile.js';
export { formatDuration, parseDuration } from './duration.js';
export {
  DEFAULT_LATE_AFTER_MS,
  DEFAULT_STALE_AFTER_MS,
  EVIDENCE_LIMIT,
  type ReplaceResult,
  RuleEngine,
  type RuleEngineOptions,
} from './engine.js';
export {
  expandPaths,
  formatIssue,
  formatWarning,
  type LoadResult,
  loadRuleFiles,
  loadRuleText,
} from './loader.js';
export { familyForModel, type MetricSpec, MODEL_CATALOGUE, type ModelFamily } from './models.js';
export { type ReplayItem, type ReplayOptions, replayHistory } from './replay.js';
export {
  API_VERSION,
  CATEGORIES,
  exportRuleJsonSchema,
  ruleFileSchema,
  ruleJsonSchemaText,
  SEVERITIES,
} from './schema.js';
export type * from './types.js';
export { type RuleWatcher, watchRules } from './watch.js';
