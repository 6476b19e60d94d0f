/** The operator CLI's door (`npx vigil`): its configuration and the heartbeat reading tests share. */
export { readHeartbeats } from './actor-commands.js';
export { CLI_CONFIG } from './config.js';
