import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { loadChannel } from '../../engine/load.ts'

const DIR = resolve('test/fixtures/config', `.search-keys-${process.pid}`)
mkdirSync(DIR, { recursive: true })
afterAll(() => rmSync(DIR, { recursive: true, force: true }))

const channelWith = (options: Record<string, unknown>) => {
  const file = resolve(DIR, 'c.json')
  writeFileSync(file, JSON.stringify({
    name: 'c', source: { type: '../ticker.ts', config: { cron: '* * * * *' } },
    destinations: [{ name: 'api', type: '../post.ts', config: { url: 'https://api.example.org/in', apiKey: 'k-123456789' } }],
    options,
  }))
  return file
}
const problemsOf = async (options: Record<string, unknown>) => {
  const err = await loadChannel(channelWith(options)).then(() => undefined, (e) => e)
  expect(err?.code).toBe('ERR_CONFIG_INVALID')
  return (err.problems as Array<{ pointer: string; message: string }>).map((p) => `${p.pointer}: ${p.message}`)
}

describe('options.searchKeys in a channel file', () => {
  it('loads JSONata expressions and HL7 terse paths', async () => {
    const keys = { mrn: 'PID.3.1', accession: 'ORC.3', order_id: 'orders[status="new"].id', n2: '$string(count)' }
    const ch = await loadChannel(channelWith({ searchKeys: keys, orderBy: 'PID.3[2].1' }))
    expect(ch.options.searchKeys).toEqual(keys)
  })

  it('invalid JSONata is a config error at the key\'s JSON pointer; so is an invalid orderBy', async () => {
    expect(await problemsOf({ searchKeys: { mrn: 'patient.mrn', accession: 'orders[' }, orderBy: 'a +' })).toEqual([
      expect.stringMatching(/^\/options\/orderBy: invalid JSONata expression/),
      expect.stringMatching(/^\/options\/searchKeys\/accession: invalid JSONata expression/),
    ])
  })

  it('refuses a bad name, an empty expression and more than 16 keys', async () => {
    const problems = await problemsOf({ searchKeys: { MRN: 'mrn', ok: '' } })
    expect(problems.some((p) => p.startsWith('/options/searchKeys') && p.includes('MRN'))).toBe(true)
    expect(problems.some((p) => p.startsWith('/options/searchKeys/ok'))).toBe(true)
    const many = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'x']))
    expect((await problemsOf({ searchKeys: many })).some((p) => p.startsWith('/options/searchKeys'))).toBe(true)
  })
})
