// @ts-check
// Compiles Weir's TypeScript to JavaScript in dist/ (`npm run build`; `npm install` and `npm ci`,
// `--omit=dev` included, run it through the `prepare` script), and tells bin/weir.js whether dist/
// is there and current.
//
// Why compiled: a TypeScript loader registered for the whole process costs about 35 MB of memory
// (tsx runs its hooks on a thread of its own) and transpiles every module at each start. The engine
// runs compiled; a channel's own `.ts` modules are compiled by esbuild in its module hooks.
//
// Plain JavaScript (type-checked through JSDoc), because it must run before dist/ exists.
import { spawnSync } from 'node:child_process'
import { copyFileSync, readdirSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, sep } from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const DIST = join(ROOT, 'dist')
/** Written last: a build that failed half-way leaves none. */
const STAMP = join(DIST, 'BUILT')
/** What the build compiles (tsconfig.build.json's `include`). */
const SOURCES = ['index.ts', 'components', 'shared', 'engine', 'tsconfig.json', 'tsconfig.build.json', 'bin/build.js']
/** Files copied as they are: the dashboard's browser script and stylesheet. */
const ASSET = /\.(css|html|svg)$|^engine\/admin\/pages\/dashboard\.js$/

/**
 * Every file under `path` (or `path` itself), relative to the root, and with `dirs` the directories
 * too (a deleted file changes its directory's time).
 * @param {string} path @param {boolean} [dirs] @returns {string[]}
 */
function files(path, dirs = false) {
  const full = join(ROOT, path)
  const st = statSync(full, { throwIfNoEntry: false })
  if (!st) return []
  if (!st.isDirectory()) return [path]
  return [...(dirs ? [path] : []), ...readdirSync(full).flatMap((name) => files(join(path, name), dirs))]
}

/**
 * Why dist/ cannot be run, or undefined when it is current: missing, or older than a source file
 * (a `git pull` or an edit since the last build).
 * @returns {string | undefined}
 */
export function distProblem() {
  const built = statSync(STAMP, { throwIfNoEntry: false })
  if (!built) return `Weir is not built (no dist/BUILT): run \`npm run build\` in ${ROOT}`
  const newer = SOURCES.flatMap((f) => files(f, true)).find((f) => statSync(join(ROOT, f)).mtimeMs > built.mtimeMs)
  if (newer) return `Weir's build in dist/ is older than ${newer}: run \`npm run build\` in ${ROOT}`
  return undefined
}

/**
 * Compiles into a fresh directory beside dist/ and swaps it in once complete, so that an engine
 * running from dist/ (which loads some modules on demand) never sees it half-built or missing.
 * Returns tsc's exit status.
 */
export function build() {
  let tsc
  try {
    tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
  } catch {
    console.error('weir: building needs the typescript package (a dependency of weir): run `npm ci` first')
    return 1
  }
  const next = `${DIST}.next-${process.pid}`
  const old = `${DIST}.old-${process.pid}`
  rmSync(next, { recursive: true, force: true })
  // --noCheck: the build only strips types (`npm test` type-checks), so it needs no @types packages
  // and works after `npm ci --omit=dev`.
  const r = spawnSync(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.build.json'), '--noCheck', '--outDir', next], { stdio: 'inherit' })
  if (r.status !== 0) {
    rmSync(next, { recursive: true, force: true })
    return r.status ?? 1
  }
  for (const f of SOURCES.flatMap((f) => files(f)).filter((f) => ASSET.test(f.split(sep).join('/')))) copyFileSync(join(ROOT, f), join(next, f))
  writeFileSync(join(next, 'BUILT'), `${new Date().toISOString()}\n`)
  if (statSync(DIST, { throwIfNoEntry: false })) renameSync(DIST, old)
  renameSync(next, DIST)
  rmSync(old, { recursive: true, force: true })
  return 0
}

if (process.argv[1] && realpathSync(fileURLToPath(import.meta.url)) === realpathSync(process.argv[1])) {
  const started = Date.now()
  const status = build()
  if (status === 0) console.log(`built dist/ in ${((Date.now() - started) / 1000).toFixed(1)} s`)
  process.exitCode = status
}
