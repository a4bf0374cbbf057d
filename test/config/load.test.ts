import { writeFileSync, rmSync, mkdirSync } from 'node:fs'
import { resolve } from 'node:path'
import { inspect } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'
import { loadChannel, loadChannelObject } from '../../engine/load.ts'
import { createRegistry } from '../../shared/config/registry.ts'
import { Secret } from '../../shared/secret.ts'
import { defineComponent, type Message } from '../../shared/component.ts'
import { silentLogger } from '../../shared/log/index.ts'

const DIR = resolve('test/fixtures/config', `.load-${process.pid}`)
mkdirSync(DIR, { recursive: true })
afterAll(() => rmSync(DIR, { recursive: true, force: true }))
const write = (name: string, v: unknown) => { const f = resolve(DIR, name); writeFileSync(f, JSON.stringify(v)); return f }

const base = {
  name: 'c1', source: { type: '../ticker.ts', config: { cron: '* * * * *' } },
  destinations: [{ name: 'api', type: '../post.ts', config: { url: 'https://api.example.org/in', apiKey: { $env: 'WEIR_TEST_KEY' } } }],
}

describe('loadChannel', () => {
  it('defaults, resolves secrets to Secret values and deep-freezes the config', async () => {
    const ch = await loadChannel(write('a.json', base), { env: { WEIR_TEST_KEY: 'k-123456789' } })
    const d = ch.destinations[0]!
    expect(d.config.timeoutMs).toBe(5000)
    expect(d.retry).toEqual({ maxAttempts: 10, initialDelayMs: 500, maxDelayMs: 60000, maxElapsedMs: 900000 })
    expect(d.circuitBreaker).toEqual({ failureThreshold: 5, resetAfterMs: 30000 })
    expect(ch.options).toEqual({ concurrency: 1, queueLimit: 10000, onError: 'skip', shutdownTimeoutMs: 10000 })
    const key = d.config.apiKey as Secret
    expect(key).toBeInstanceOf(Secret)
    expect(key.reveal()).toBe('k-123456789')
    expect(key.source).toBe('$env:WEIR_TEST_KEY')
    expect(JSON.stringify(d.config)).not.toContain('k-123456789')
    expect(inspect(d.config)).not.toContain('k-123456789')
    expect(Object.isFrozen(d.config)).toBe(true)
    expect(Object.isFrozen(d.config.headers)).toBe(true)
    expect(() => { (d.config as Record<string, unknown>).url = 'x' }).toThrow(TypeError)
    expect(ch.warnings).toEqual([])
  })

  it('clones: the parsed file is not mutated by defaults', async () => {
    const raw = structuredClone(base)
    await loadChannelObject(raw, { file: resolve(DIR, 'virtual.json'), env: { WEIR_TEST_KEY: 'k-123456789' } })
    expect(raw).toEqual(base)
  })

  it('reads $file secrets relative to the channel file, trimming the trailing newline', async () => {
    const f = write('b.json', { ...base, destinations: [{ ...base.destinations[0], config: { url: 'https://a.example/', apiKey: { $file: '../secret.txt' } } }] })
    const ch = await loadChannel(f)
    expect((ch.destinations[0]!.config.apiKey as Secret).reveal()).toBe('s3cr3t-from-file')
  })

  it('warns about a literal secret but accepts it', async () => {
    const f = write('c.json', { ...base, destinations: [{ ...base.destinations[0], config: { url: 'https://a.example/', apiKey: 'literal-secret-1' } }] })
    const ch = await loadChannel(f)
    expect(ch.warnings).toEqual([`${f.slice(process.cwd().length + 1)}#/destinations/0/config/apiKey: literal secret in the channel file; use {"$env": "NAME"} or {"$file": "path"}`])
    expect(ch.warnings.join()).not.toContain('literal-secret-1')
  })

  it('loads a user component written in TypeScript with no build step, and runs it', async () => {
    const f = write('d.json', { ...base, filters: [{ type: '../upper.ts', config: {} }] })
    const ch = await loadChannel(f, { env: { WEIR_TEST_KEY: 'k-123456789' } })
    const filter = ch.filters[0]!
    expect(filter.definition.type).toBe('upper')
    expect(filter.config).toEqual({ suffix: '!' })
    const instance = await filter.definition.create(filter.config, { log: silentLogger } as never)
    const msg: Message = { id: 'm1', channel: 'c1', body: 'hello', contentType: 'text/plain', attributes: {}, receivedAt: 0 }
    expect(await instance.process(msg)).toMatchObject({ id: 'm1', body: 'HELLO!' })
  })
})

describe('createRegistry', () => {
  const comp = (type: string, configSchema: Record<string, unknown> = { type: 'object', properties: {} }) =>
    defineComponent({ type, kind: 'filter', description: 'd', configSchema, create: () => ({ process: (m: Message) => m }) })

  it('throws on a duplicate type', () => {
    expect(() => createRegistry([comp('a'), comp('a')])).toThrow('duplicate component type "a"')
  })

  it('compiles every schema at start-up and names the component whose schema is broken', () => {
    const err = (() => { try { createRegistry([comp('b', { type: 'object', properties: { x: { type: 'strin' } } })]) } catch (e) { return e } })() as { code: string; message: string }
    expect(err.code).toBe('ERR_COMPONENT_INVALID')
    expect(err.message).toMatch(/^component "b" has an invalid configSchema: /)
  })

  it('rejects a definition missing parts of the contract, naming them', () => {
    expect(() => createRegistry([{ type: 'c', kind: 'filter' } as never])).toThrow('built-in component "c" is not valid: missing "description" (a string), missing "configSchema" (a JSON Schema object), missing create() (a function)')
  })

  it('lists by kind, sorted', () => {
    const r = createRegistry([comp('z'), comp('m')])
    expect(r.list('filter').map((d) => d.type)).toEqual(['m', 'z'])
    expect(r.list('source')).toEqual([])
  })
})

describe('shared credentials file', () => {
  const cred = { tokenUrl: 'https://auth.example.org/token', clientId: 'c1', clientAuth: { method: 'client_secret_basic', secret: { $env: 'WEIR_TEST_SHARED_SECRET' } } }
  const channelWith = (extra: Record<string, unknown>) => ({ ...base, ...extra, destinations: [{ name: 'api', type: '../post.ts', config: { url: 'https://api.example.org/in', credential: 'shared' } }] })

  it('lets several channels use credentials defined once, secrets resolved relative to it', async () => {
    writeFileSync(resolve(DIR, 'creds.json'), JSON.stringify({ shared: cred }))
    const a = await loadChannel(write('s1.json', channelWith({ credentialsFile: 'creds.json' })), { env: { WEIR_TEST_SHARED_SECRET: 'shared-secret-value' } })
    const b = await loadChannel(write('s2.json', channelWith({ name: 'c2', credentialsFile: 'creds.json' })), { env: { WEIR_TEST_SHARED_SECRET: 'shared-secret-value' } })
    for (const ch of [a, b]) {
      const c = ch.credentials.shared as { clientAuth: { secret: Secret }; clientId: string }
      expect(c.clientId).toBe('c1')
      expect(c.clientAuth.secret.reveal()).toBe('shared-secret-value')
      expect(Object.isFrozen(c)).toBe(true)
    }
  })

  it('reports problems in the credentials file against its own name and pointer', async () => {
    writeFileSync(resolve(DIR, 'bad-creds.json'), JSON.stringify({ shared: { ...cred, tokenUrl: 'nope', clientSecret: 'x' } }))
    const err = await loadChannel(write('s3.json', channelWith({ credentialsFile: 'bad-creds.json' })), { env: {} }).catch((e) => e)
    expect(err.code).toBe('ERR_CONFIG_INVALID')
    const rel = resolve(DIR, 'bad-creds.json').slice(process.cwd().length + 1)
    expect(err.problems.map((p: { file: string; pointer: string; message: string }) => `${p.file}#${p.pointer}: ${p.message}`)).toEqual([
      expect.stringMatching(new RegExp(`^${rel.replace(/[.]/g, '\\.')}#/shared/clientSecret: unknown property "clientSecret"; expected one of "preset", "grant", "tokenUrl", `)),
      `${rel}#/shared/tokenUrl: must match format "uri"`,
    ])
  })

  it('refuses a name defined both in the channel and in the file', async () => {
    writeFileSync(resolve(DIR, 'creds2.json'), JSON.stringify({ shared: cred }))
    const f = write('s4.json', channelWith({ credentialsFile: 'creds2.json', credentials: { shared: { ...cred, clientAuth: { method: 'none' } } } }))
    const err = await loadChannel(f, { env: { WEIR_TEST_SHARED_SECRET: 'shared-secret-value' } }).catch((e) => e)
    expect(err.problems.map((p: { pointer: string; message: string }) => `${p.pointer}: ${p.message}`)).toEqual([
      `/credentials/shared: credential "shared" is also defined in ${resolve(DIR, 'creds2.json').slice(process.cwd().length + 1)}; use one`,
    ])
  })

  it('a missing credentials file is an error naming it', async () => {
    const err = await loadChannel(write('s5.json', channelWith({ credentialsFile: 'none.json' })), { env: {} }).catch((e) => e)
    expect(err.message).toBe(`${resolve(DIR, 'none.json').slice(process.cwd().length + 1)}#: credentials file not found`)
  })
})

describe('ConfigError', () => {
  it('carries a code per problem where one applies, and keeps the raw ajv errors (which quote the data) out of JSON', async () => {
    const f = write('codes.json', {
      ...base,
      credentials: { c: { tokenUrl: 'https://a.example/t', clientAuth: { method: 'client_secret_basic', secret: 'literal-secret-in-bad-credential' }, bogus: 1 } },
      filters: [{ type: 'nope' }],
      destinations: [{ name: 'api', type: '../post.ts', config: { url: 'https://a.example/', apiKey: { $env: 'WEIR_TEST_NOT_SET_X' } } }],
    })
    const err = await loadChannel(f, { env: {} }).catch((e) => e)
    expect(err.code).toBe('ERR_CONFIG_INVALID')
    const codes = Object.fromEntries(err.problems.map((p: { pointer: string; code?: string }) => [p.pointer, p.code]))
    expect(codes['/filters/0/type']).toBe('ERR_COMPONENT_UNKNOWN')
    expect(codes['/destinations/0/config/apiKey']).toBe('ERR_SECRET_UNRESOLVED')
    expect(err.errors.length).toBeGreaterThan(0)
    expect(Object.keys(err)).not.toContain('errors')
    expect(JSON.stringify(err)).not.toContain('literal-secret-in-bad-credential')
    expect(err.message).not.toContain('literal-secret-in-bad-credential')
  })
})

