/** The DR drill runner's door (`npm run drill`): its configuration and its report's shape. */
export { DRILL_CONFIG } from './config.js';
export type { DrillReport } from './run-drill.js';
