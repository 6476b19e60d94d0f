#!/usr/bin/env node
// The `vigil` command (package.json "bin": `npx vigil <command>`): the operator CLI whose source
// is nodes/cli/main.ts. Its output is the CLI's alone, so `npx vigil dlq list --json | jq .`
// works, where `npm run vigil -- ...` puts npm's banner first.
//
// In a checkout (the source and tsx present) it runs the TypeScript through tsx, so it always
// runs the code as it is: dist/ is only as new as the last `npm run build` (the bench builds it
// and nothing rebuilds it after an edit). Where tsx is not installed (production installs omit
// devDependencies), it runs the compiled dist/nodes/cli/main.js.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = new URL('..', import.meta.url);
const source = new URL('nodes/cli/main.ts', root);
const compiled = new URL('dist/nodes/cli/main.js', root);

/** tsx's loader, when it can be had: only devDependencies bring it. */
async function tsxLoader() {
  if (!existsSync(fileURLToPath(source))) return undefined;
  try {
    return await import('tsx/esm/api');
  } catch {
    return undefined;
  }
}

const tsx = await tsxLoader();
if (tsx) {
  tsx.register();
  await import(pathToFileURL(fileURLToPath(source)).href);
} else if (existsSync(fileURLToPath(compiled))) {
  await import(compiled.href);
} else {
  process.stderr.write(
    'vigil: found neither tsx to run nodes/cli/main.ts nor a compiled dist/nodes/cli/main.js: ' +
      'run `npm install`, or `npm run build`\n',
  );
  process.exitCode = 1;
}
