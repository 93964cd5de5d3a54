export * from './limits.js';
export * from './payloads.js';
export * from './topics.js';
