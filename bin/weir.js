#!/usr/bin/env node
// Runs Weir compiled to JavaScript (dist/, built by `npm run build`, which `npm install` runs).
// A channel's own `.ts` modules are compiled by esbuild in Weir's module hooks
// (shared/config/module-hooks.js), registered only when a channel names a module of its own.
import { distProblem } from './build.js'

const problem = distProblem()
if (problem) {
  process.stderr.write(`weir: ${problem}\n`)
  process.exit(1)
}
const { main } = await import('../dist/engine/cli.js')
const code = await main(process.argv.slice(2))
process.exitCode = code
// A component that ignores its abort signal could keep a socket open after a clean stop; do not
// let it hold the process. Unref'd: fires only if something else is still keeping the loop alive.
setTimeout(() => process.exit(code), 2000).unref()
