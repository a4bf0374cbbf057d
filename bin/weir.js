#!/usr/bin/env node
// Runs the TypeScript CLI without a build step: tsx's loader handles .ts (ours and users' components).
import { register } from 'tsx/esm/api'

register()
const { main } = await import('../engine/cli.ts')
const code = await main(process.argv.slice(2))
process.exitCode = code
// A component that ignores its abort signal could keep a socket open after a clean stop; do not
// let it hold the process. Unref'd: fires only if something else is still keeping the loop alive.
setTimeout(() => process.exit(code), 2000).unref()
