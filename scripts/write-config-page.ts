// `npm run docs:config`: writes docs/configuration.md from the configuration declarations.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CONFIGURATION_PAGE_PATH, configurationPage } from './config-page.js';

const root = fileURLToPath(new URL('..', import.meta.url));
writeFileSync(join(root, CONFIGURATION_PAGE_PATH), await configurationPage(root));
process.stdout.write(`wrote ${CONFIGURATION_PAGE_PATH}\n`);
