#!/usr/bin/env node
// Runs the TypeScript CLI without a build step: tsx's loader handles .ts (ours and users' components).
import { register } from 'tsx/esm/api'

register()
const { main } = await import('../engine/cli.ts')
process.exitCode = await main(process.argv.slice(2))
