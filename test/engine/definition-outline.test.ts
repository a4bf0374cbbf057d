import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { channelDefinition, definitionFingerprint } from '../../engine/definition-fingerprint.ts'
import { loadChannel } from '../../engine/load.ts'
import { outlineDifferences } from '../../shared/store/postgres/engines.ts'
import { tempDir } from '../runtime/_helpers.ts'

const dirs: Array<{ remove(): Promise<void> }> = []
afterAll(() => Promise.all(dirs.map((d) => d.remove())))

async function dir(): Promise<string> {
  const d = await tempDir('weir-outline-')
  dirs.push(d)
  return d.path
}

/** A channel with a listener, an inline schema (a property whose name needs escaping), a literal secret and options of both kinds. */
function channel(o: { url?: string; secret?: string; port?: number; concurrency?: number; options?: Record<string, unknown> } = {}): Record<string, unknown> {
  return {
    name: 'orders',
    source: { type: 'http-listener', config: { port: o.port ?? 7001 } },
    filters: [{ type: 'validate', config: { schema: { type: 'object', properties: { 'a/b~c': { type: 'string' } } } } }],
    destinations: [{ name: 'api', type: 'http', config: { url: o.url ?? 'https://api.example.com/in', credential: 'crm' } }],
    credentials: { crm: { tokenUrl: 'https://auth.example.com/token', clientId: 'weir', clientAuth: { method: 'client_secret_basic', secret: o.secret ?? 'literal-secret-one' } } },
    options: { concurrency: o.concurrency ?? 4, ...o.options },
  }
}

async function definitionOf(d: string, raw: Record<string, unknown>) {
  const file = join(d, 'orders.json')
  await writeFile(file, JSON.stringify(raw, null, 2))
  const loaded = await loadChannel(file, { env: {} })
  return { ...(await channelDefinition(loaded)), alone: await definitionFingerprint(loaded) }
}

/** The pointers whose digests differ between two outlines, or that only one has. */
function changed(a: Record<string, string>, b: Record<string, string>): string[] {
  return [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => a[k] !== b[k]).sort()
}

describe('the outline of a channel definition', () => {
  it('maps the JSON pointer of each leaf of what the fingerprint covers to a short digest of it, never the value; the fingerprint is unchanged', async () => {
    const { fingerprint, outline, alone } = await definitionOf(await dir(), channel())
    expect(fingerprint).toBe(alone)
    // Computed before the outline existed: the fingerprint of a definition must not change with the version of weir.
    expect(fingerprint).toBe('sha256:bea6a29b16aeb80ebb4b3f694c9faea7439518f1b69eaae28ad3b175e7c38cbd')
    expect(Object.keys(outline).sort()).toEqual([
      '/credentials/crm/clientAuth/method', '/credentials/crm/clientAuth/secret', '/credentials/crm/clientId', '/credentials/crm/tokenUrl',
      '/destinations/0/config/credential', '/destinations/0/config/url', '/destinations/0/name', '/destinations/0/type',
      '/filters/0/config/schema/properties/a~1b~0c/type', '/filters/0/config/schema/type', '/filters/0/type',
      '/name', '/options',
    ])
    expect(Object.values(outline).every((v) => /^[0-9a-f]{12}$/.test(v))).toBe(true)
    const text = JSON.stringify(outline)
    for (const value of ['api.example.com', 'auth.example.com', 'literal-secret-one', 'weir', 'orders']) expect(text).not.toContain(value)
  })

  it('another value changes the digest at its pointer alone; the source, the options that tune one engine and a literal secret\'s value change nothing', async () => {
    const d = await dir()
    const { outline } = await definitionOf(d, channel())
    const other = async (o: Parameters<typeof channel>[0]) => changed(outline, (await definitionOf(d, channel(o))).outline)
    expect(await other({ url: 'https://api.example.com/v2/in' })).toEqual(['/destinations/0/config/url'])
    expect(await other({ options: { orderBy: 'id' } })).toEqual(['/options', '/options/orderBy'])
    expect(await other({ secret: 'literal-secret-two', port: 7002, concurrency: 16 })).toEqual([])
  })

  it('names a file a component loads `files/<path as written>` and the leaves of the credentials file `<path as written>#<pointer>`, its literal secrets masked', async () => {
    const d = await dir()
    await mkdir(join(d, 'schemas'))
    const creds = (scope: string, secret: string) => JSON.stringify({ crm: { tokenUrl: 'https://auth.example.com/token', clientId: 'weir', scope, clientAuth: { method: 'client_secret_basic', secret } } })
    const raw = {
      ...channel(), credentials: undefined, credentialsFile: 'creds.json',
      filters: [{ type: 'validate', config: { schemaFile: 'schemas/order.json' } }],
    }
    const write = async (schema: unknown, scope: string, secret: string) => {
      await writeFile(join(d, 'schemas', 'order.json'), JSON.stringify(schema))
      await writeFile(join(d, 'creds.json'), creds(scope, secret))
      return (await definitionOf(d, raw)).outline
    }
    const a = await write({ type: 'object' }, 'orders.write', 'literal-secret-one')
    expect(Object.keys(a).filter((k) => !k.startsWith('/')).sort()).toEqual([
      'creds.json#/crm/clientAuth/method', 'creds.json#/crm/clientAuth/secret', 'creds.json#/crm/clientId', 'creds.json#/crm/scope', 'creds.json#/crm/tokenUrl',
      'files/schemas/order.json',
    ])
    expect(a['/credentialsFile']).toMatch(/^[0-9a-f]{12}$/)
    expect(changed(a, await write({ type: 'object' }, 'orders.write', 'literal-secret-two'))).toEqual([])
    expect(changed(a, await write({ type: 'array' }, 'orders.admin', 'literal-secret-one'))).toEqual(['creds.json#/crm/scope', 'files/schemas/order.json'])
  })
})

describe('where two outlines differ', () => {
  it('names a part one side lacks once, a changed value by its pointer, credentials pointers after the #, and sorts them numerically', () => {
    const here = {
      '/destinations/0/config/url': 'a1', '/destinations/2/name': 'b1', '/destinations/2/config/x': 'b2', '/destinations/10/name': 'c1',
      'creds.json#/crm/scope': 's1', 'creds.json#/crm/extra/one': 'e1', 'files/./dest.ts': 'f1',
    }
    const there = {
      '/destinations/0/config/url': 'a2', '/destinations/10/name': 'c1', '/options/orderBy': 'o1',
      'creds.json#/crm/scope': 's2', 'files/./dest.ts': 'f1', 'files/./other.ts': 'f2',
    }
    expect(outlineDifferences(here, there)).toEqual([
      { pointer: '/destinations/0/config/url', change: 'changed' },
      { pointer: '/destinations/2', change: 'added' },
      { pointer: '/options', change: 'removed' },
      { pointer: 'creds.json#/crm/extra', change: 'added' },
      { pointer: 'creds.json#/crm/scope', change: 'changed' },
      { pointer: 'files/./other.ts', change: 'removed' },
    ])
    expect(outlineDifferences(here, here)).toEqual([])
  })
})
