import type { ComponentDefinition } from '../shared/component.ts'

/**
 * The built-in components: a static list, no import side effects. Add each new component here
 * (one import, one entry); the registry, the editor schema and the README reference follow.
 */
export const builtinComponents: ComponentDefinition[] = [
]
