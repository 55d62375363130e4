export { createPool } from "./pool.js";
export { migrate, MigrationRefused, migrateWhenReachable, type MigrationPlan } from "./migrations.js";
export { quoteIdent, sqlState } from "./sql.js";
