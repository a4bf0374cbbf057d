import { constants, existsSync } from 'node:fs'
import { copyFile, mkdir, readdir, realpath, stat, writeFile } from 'node:fs/promises'
import { dirname, join, relative, sep } from 'node:path'
import { pathToFileURL } from 'node:url'

const MODULE_FILE = /\.(m?[jt]s|c[jt]s|[jt]sx)$/

/**
 * What stands in the sandbox for a module: one that re-exports the real file, so that a module
 * loaded through `ctx.channelDir` (a script filter) still resolves its own imports (relative ones,
 * node_modules) from where it really is. A copy would not, and a symbolic link is not followed by
 * every loader (vitest's is not). An ES module unless the extension says CommonJS; the package.json
 * written above the sandbox makes `.js` and `.ts` stubs ES modules.
 */
function moduleStub(real: string): string {
  if (/\.c[jt]s$/.test(real)) return `module.exports = require(${JSON.stringify(real)})\n`
  const url = JSON.stringify(pathToFileURL(real).href)
  return `export * from ${url}\nimport * as real from ${url}\nexport default real.default\n`
}

/**
 * Not copied: hidden entries, dependencies, data directories of a running engine (they hold
 * weir.db), and package.json files, which would change the module type of the stubs.
 */
const skipped = (dir: string, name: string) => name.startsWith('.') || name === 'node_modules' || name === 'package.json' || existsSync(join(dir, name, 'weir.db'))

export interface ChannelSandbox {
  /** The copy of the channel directory that components get as `ctx.channelDir`. */
  readonly dir: string
  /** Files created or changed in the copy since it was made, relative to it, with / separators, sorted. */
  written(): Promise<string[]>
}

/**
 * Copies the channel directory into `to` for one case, so that components read what is next to
 * the channel (schemas, TLS files, script modules) and whatever they write stays in the case.
 * The parent of `to` must belong to the case: it gets the package.json that makes the stubs ES modules.
 */
export async function sandboxChannelDir(from: string, to: string): Promise<ChannelSandbox> {
  const copied = new Map<string, string>()
  const seen = new Set<string>() // real paths of the directories copied: a link to a parent does not loop
  const copy = async (src: string, dst: string) => {
    const real = await realpath(src)
    if (seen.has(real)) return
    seen.add(real)
    await mkdir(dst, { recursive: true })
    for (const e of await readdir(src, { withFileTypes: true })) {
      if (skipped(src, e.name)) continue
      const s = join(src, e.name)
      const d = join(dst, e.name)
      const info = await stat(s).catch(() => undefined) // a dangling link is left out
      if (info?.isDirectory()) await copy(s, d)
      else if (info?.isFile()) {
        if (MODULE_FILE.test(e.name)) await writeFile(d, moduleStub(s))
        else await copyFile(s, d, constants.COPYFILE_FICLONE)
        copied.set(d, fingerprint(await stat(d)))
      }
    }
  }
  await mkdir(dirname(to), { recursive: true })
  await writeFile(join(dirname(to), 'package.json'), '{ "type": "module" }\n')
  await copy(from, to)
  return { dir: to, written: () => listFiles(to, async (p) => copied.get(p) !== fingerprint(await stat(p))) }
}

/**
 * The regular files under `dir` that `keep` accepts (by absolute path), relative to it, with /
 * separators, sorted. Hidden files are left out: writers use them for a write in progress.
 */
export async function listFiles(dir: string, keep: (path: string) => boolean | Promise<boolean> = () => true): Promise<string[]> {
  const out: string[] = []
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = join(d, e.name)
      if (e.isDirectory()) await walk(p)
      else if (e.isFile() && !e.name.startsWith('.') && (await keep(p))) out.push(relative(dir, p).split(sep).join('/'))
    }
  }
  await walk(dir)
  return out.sort()
}

const fingerprint = (s: { size: number; mtimeMs: number }) => `${s.size}:${s.mtimeMs}`
