import type { ESLint, Rule } from 'eslint';

/** The rule: imports go through folder doors (index.ts) and point one way. */
export declare const folderDoors: Rule.RuleModule;

/** The plugin object for eslint.config.mjs (`vigil/folder-doors`). */
declare const plugin: ESLint.Plugin & { rules: { 'folder-doors': Rule.RuleModule } };
export default plugin;
