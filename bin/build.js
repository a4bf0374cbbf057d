// @ts-check
// Compiles Weir's TypeScript to JavaScript in dist/ (`npm run build`; `npm install` and `npm ci`,
// `--omit=dev` included, run it through the `prepare` script), and tells bin/weir.js whether dist/
// is there and current.
//
// Why compiled: a TypeScript loader registered for the whole process costs about 35 MB of memory
// (tsx runs its hooks on a thread of its own) and transpiles every module at each start. The engine
// runs compiled; tsx is registered only when a channel names a `.ts` component of its own.
//
// Plain JavaScript (type-checked through JSDoc), because it must run before dist/ exists.
import { spawnSync } from 'node:child_process'
import { copyFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const DIST = join(ROOT, 'dist')
/** Written last: a build that failed half-way leaves none. */
const STAMP = join(DIST, 'BUILT')
/** What the build compiles (tsconfig.build.json's `include`). */
const SOURCES = ['index.ts', 'components', 'shared', 'engine', 'tsconfig.json', 'tsconfig.build.json']
/** Files copied as they are: the dashboard's browser script and stylesheet. */
const ASSET = /\.(css|html|svg)$|^engine\/admin\/pages\/dashboard\.js$/

/** @param {string} path @returns {string[]} every file under `path` (or `path` itself), relative to the root */
function files(path) {
  const full = join(ROOT, path)
  const st = statSync(full, { throwIfNoEntry: false })
  if (!st) return []
  if (!st.isDirectory()) return [path]
  return readdirSync(full).flatMap((name) => files(join(path, name)))
}

/**
 * Why dist/ cannot be run, or undefined when it is current: missing, or older than a source file
 * (a `git pull` or an edit since the last build).
 * @returns {string | undefined}
 */
export function distProblem() {
  const built = statSync(STAMP, { throwIfNoEntry: false })
  if (!built) return `Weir is not built (no dist/BUILT): run \`npm run build\` in ${ROOT}`
  const newer = SOURCES.flatMap(files).find((f) => statSync(join(ROOT, f)).mtimeMs > built.mtimeMs)
  if (newer) return `Weir's build in dist/ is older than ${newer}: run \`npm run build\` in ${ROOT}`
  return undefined
}

/** Compiles into dist/ from scratch; returns tsc's exit status. */
export function build() {
  let tsc
  try {
    tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
  } catch {
    console.error('weir: building needs the typescript package (a dependency of weir): run `npm ci` first')
    return 1
  }
  rmSync(DIST, { recursive: true, force: true })
  // --noCheck: the build only strips types (`npm test` type-checks), so it needs no @types packages
  // and works after `npm ci --omit=dev`.
  const r = spawnSync(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.build.json'), '--noCheck'], { stdio: 'inherit' })
  if (r.status !== 0) return r.status ?? 1
  for (const f of SOURCES.flatMap(files).filter((f) => ASSET.test(f))) copyFileSync(join(ROOT, f), join(DIST, f))
  writeFileSync(STAMP, `${new Date().toISOString()}\n`)
  return 0
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const started = Date.now()
  const status = build()
  if (status === 0) console.log(`built dist/ in ${((Date.now() - started) / 1000).toFixed(1)} s`)
  process.exitCode = status
}
