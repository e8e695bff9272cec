// src/source: the outgoing side of a post-copy migration.
export { migrate, type MigrateOptions, type MigrationStats, type MigrationProgress, type StateProvider } from './migrate.js';
export { MigrationError, type MigrationErrorCode } from './errors.js';
export { parseMigrationUri, type MigrationUri } from './uri.js';
export { PageMap, type SourceRegion, type BlockInfo } from './page-map.js';
export { serveMigrationAgent, requestMigration, agentSocketPath, type AgentOptions, type AgentMigrateRequest, type AgentReply, type MigrationAgent } from './agent.js';
export { createMigratableRegion, type MigratableRegion } from './region.js';
