import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import ts from 'typescript'
import { describe, expect, it } from 'vitest'

const root = resolve(import.meta.dirname, '..')

function sourceFiles(dir: string): string[] {
  return readdirSync(join(root, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .map((f) => join(dir, f))
}

/** Project-relative paths of every module `file` imports (static, re-exports, dynamic `import()`). */
function importsOf(file: string): string[] {
  const { importedFiles } = ts.preProcessFile(readFileSync(join(root, file), 'utf8'), true, true)
  return importedFiles
    .map((i) => i.fileName)
    .filter((spec) => spec.startsWith('.'))
    .map((spec) => relative(root, resolve(root, dirname(file), spec)))
}

/** `[importer, imported]` for every import from a file under one of `from` into a file under `to`. */
function edges(from: string[], to: string): Array<[string, string]> {
  return from.flatMap(sourceFiles).flatMap((f) => importsOf(f).filter((i) => i.startsWith(`${to}/`)).map((i): [string, string] => [f, i]))
}

describe('layering of shared/', () => {
  it('the scanner sees imports (shared/oauth builds on shared/http)', () => {
    expect(edges(['shared/oauth'], 'shared/http').length).toBeGreaterThan(0)
  })

  it('nothing under shared/ imports from components/ or engine/ (the engine hands the built-ins to the registry)', () => {
    expect([...edges(['shared'], 'components'), ...edges(['shared'], 'engine')]).toEqual([])
  })

  it('shared/http and shared/oauth do not import each other in a circle (http is the lower layer)', () => {
    expect(edges(['shared/http'], 'shared/oauth')).toEqual([])
  })
})
