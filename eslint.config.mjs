// One lint gate for the whole tree. Type-aware rules catch the two bugs that hurt an async
// message system most: promises nobody awaits, and type imports that drag runtime modules along.
// The folder doors, the import direction and the length of functions on the data path are rules
// too, so the layering holds without anyone watching.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import vigil from './scripts/lint/folder-doors.mjs';

/** Folders each layer may not import, first match wins: imports point nodes -> actors -> protocol. */
const LAYERS = [
  { folder: 'protocol', mayNotImport: ['actors', 'nodes', 'bench', 'test'] },
  { folder: 'actors', mayNotImport: ['nodes', 'bench', 'test'] },
  // The gateway and the controller talk to actors only over NATS, through protocol/'s contract.
  { folder: 'nodes/gateway', mayNotImport: ['actors', 'bench', 'test'] },
  { folder: 'nodes/controller', mayNotImport: ['actors', 'bench', 'test'] },
  { folder: 'nodes', mayNotImport: ['bench', 'test'] },
  { folder: 'bench', mayNotImport: ['test'] },
  // The long runs (npm run chaos, npm run soak) stand apart from the suite: neither imports the other.
  { folder: 'long-runs', mayNotImport: ['test', 'bench'] },
  { folder: 'test', mayNotImport: ['long-runs'] },
];

/**
 * Where a request travels (and the nodes around it), and the long runs that vouch for it: a
 * newcomer reads these, so no function there runs past a screen.
 */
const DATA_PATH = ['protocol/**/*.ts', 'actors/**/*.ts', 'nodes/**/*.ts', 'long-runs/**/*.ts'];

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', '.vigil/', 'scripts/**/*.mjs', 'eslint.config.mjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { vigil },
    rules: {
      // node:test's describe/test return promises the runner itself tracks.
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [
            { from: 'package', package: 'node:test', name: ['describe', 'test', 'it', 'suite'] },
          ],
        },
      ],
      '@typescript-eslint/consistent-type-imports': 'error',
      // One import per door: a folder's index is one line, not one per module it re-exports.
      'no-duplicate-imports': ['error', { allowSeparateTypeImports: true }],
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      'no-restricted-syntax': [
        'error',
        { selector: 'ExportAllDeclaration', message: 'Name what a folder exports: no `export *`.' },
      ],
      'vigil/folder-doors': ['error', { root: import.meta.dirname, layers: LAYERS }],
    },
  },
  {
    files: DATA_PATH,
    rules: {
      'max-lines-per-function': [
        'error',
        { max: 80, skipBlankLines: true, skipComments: true, IIFEs: true },
      ],
    },
  },
);
