#!/usr/bin/env node
// Runs Weir compiled to JavaScript (dist/, built by `npm run build`, which `npm install` runs).
// A `.ts` component of a channel's own is loaded through tsx, registered only when one is named.
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
