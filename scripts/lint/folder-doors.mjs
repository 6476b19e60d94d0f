// The folder doors and the import direction, as a lint rule, so the layering holds without anyone
// watching (issue 9). Two checks on every relative import:
//
// 1. Doors. A folder with an `index.ts` is a door folder: from outside it, its modules are reached
//    only through that index. Nested doors count from the outside in, so `nodes/` reaches
//    `actors/index.ts`, never `actors/executors/index.ts`.
// 2. Direction. Each file belongs to the first layer whose folder holds it; a layer lists the
//    folders it may not import at all (`protocol` imports nothing above it, `actors` nothing from
//    `nodes`, the gateway never `actors`).
//
// Written here rather than taken from eslint-plugin-boundaries: that plugin resolves imports
// through eslint-import-resolver-typescript (and its native resolver) to map NodeNext's `.js`
// specifiers back to `.ts` files, which is more machinery than the path arithmetic this needs.
import { existsSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';

/** @type {Map<string, boolean>} */
const doorCache = new Map();

/** True when `dir` holds an `index.ts`. */
function isDoorFolder(dir) {
  let known = doorCache.get(dir);
  if (known === undefined) {
    known = existsSync(join(dir, 'index.ts'));
    doorCache.set(dir, known);
  }
  return known;
}

/** The `.ts` file a NodeNext specifier names (`./x.js` -> `./x.ts`; a folder -> its index). */
function resolveSource(fromFile, specifier) {
  const target = resolve(dirname(fromFile), specifier);
  if (/\.[cm]?js$/.test(target)) return target.replace(/\.([cm]?)js$/, '.$1ts');
  if (existsSync(target) && statSync(target).isDirectory()) return join(target, 'index.ts');
  return target;
}

/** Folders from `root` (exclusive) down to the one holding `file`, outermost first. */
function foldersOf(root, file) {
  const parts = relative(root, dirname(file)).split(sep).filter(Boolean);
  return parts.map((_, i) => join(root, ...parts.slice(0, i + 1)));
}

/** Path of `file` relative to `root`, with forward slashes. */
function rel(root, file) {
  return relative(root, file).split(sep).join('/');
}

/** @type {import('eslint').Rule.RuleModule} */
export const folderDoors = {
  meta: {
    type: 'problem',
    docs: { description: 'Imports go through folder doors (index.ts) and point one way.' },
    schema: [
      {
        type: 'object',
        properties: {
          root: { type: 'string' },
          layers: {
            type: 'array',
            items: {
              type: 'object',
              properties: {
                folder: { type: 'string' },
                mayNotImport: { type: 'array', items: { type: 'string' } },
              },
              required: ['folder', 'mayNotImport'],
              additionalProperties: false,
            },
          },
        },
        required: ['root', 'layers'],
        additionalProperties: false,
      },
    ],
    messages: {
      door: "'{{target}}' is inside {{door}}/: import {{door}}/index.ts instead (its door).",
      direction: "{{layer}}/ may not import {{forbidden}}/ ('{{target}}'): imports point {{rule}}.",
    },
  },
  create(context) {
    const { root, layers } = context.options[0];
    const file = context.filename;
    const fromFolders = new Set(foldersOf(root, file));
    const layer = layers.find((l) => rel(root, file).startsWith(`${l.folder}/`));

    const check = (node, specifier) => {
      if (typeof specifier !== 'string' || !specifier.startsWith('.')) return;
      const target = resolveSource(file, specifier);
      const targetRel = rel(root, target);
      if (layer) {
        const forbidden = layer.mayNotImport.find((f) => targetRel.startsWith(`${f}/`));
        if (forbidden) {
          context.report({
            node,
            messageId: 'direction',
            data: {
              layer: layer.folder,
              forbidden,
              target: targetRel,
              rule: 'nodes -> actors -> protocol, and the gateway talks to actors only over NATS',
            },
          });
          return;
        }
      }
      for (const door of foldersOf(root, target)) {
        if (fromFolders.has(door) || !isDoorFolder(door)) continue;
        if (target !== join(door, 'index.ts')) {
          context.report({
            node,
            messageId: 'door',
            data: { target: targetRel, door: rel(root, door) },
          });
        }
        return;
      }
    };
    return {
      ImportDeclaration: (node) => check(node.source, node.source.value),
      ExportNamedDeclaration: (node) => node.source && check(node.source, node.source.value),
      ExportAllDeclaration: (node) => check(node.source, node.source.value),
      ImportExpression: (node) =>
        node.source.type === 'Literal' && check(node.source, node.source.value),
    };
  },
};

/** The plugin object for eslint.config.mjs. */
export default { rules: { 'folder-doors': folderDoors } };
