export { createPool } from "./pool.js";
export { migrate, MigrationRefused, migrateWhenReachable, type MigrationPlan } from "./migrations.js";
export { isDataError, quoteIdent, sqlState } from "./sql.js";
