import { describe, expect, it } from 'vitest'
import { builtinComponents } from '../../components/index.ts'
import { createRegistry } from '../../shared/config/registry.ts'

/** Every schema node that declares properties, with its path. */
function* propertiesOf(schema: unknown, path = ''): Generator<[string, Record<string, unknown>]> {
  if (!schema || typeof schema !== 'object') return
  const s = schema as Record<string, unknown>
  if (s.properties && typeof s.properties === 'object') {
    for (const [k, v] of Object.entries(s.properties as Record<string, unknown>)) {
      yield [`${path}/${k}`, v as Record<string, unknown>]
      yield* propertiesOf(v, `${path}/${k}`)
    }
  }
  for (const key of ['items', 'additionalProperties']) if (s[key] && typeof s[key] === 'object') yield* propertiesOf(s[key], `${path}/${key}`)
}

describe('built-in components', () => {
  it('register without duplicates and with schemas strict ajv compiles', () => {
    const registry = createRegistry(builtinComponents)
    expect(registry.list().map((d) => `${d.kind}:${d.type}`)).toEqual([
      'destination:file', 'source:file-poller', 'filter:hl7v2', 'destination:http', 'source:http-listener', 'filter:map', 'filter:match', 'destination:mllp', 'source:mllp-listener', 'source:schedule', 'filter:script', 'filter:validate',
    ])
  })

  it.each(builtinComponents.map((d) => [d.type, d] as const))('%s: closed object schema, every property described, no default inside anyOf/oneOf', (_, def) => {
    expect(def.configSchema).toMatchObject({ type: 'object', additionalProperties: false })
    const undocumented = [...propertiesOf(def.configSchema)].filter(([, v]) => typeof v.description !== 'string' || v.description === '').map(([p]) => p)
    expect(undocumented).toEqual([])
    const text = JSON.stringify(def.configSchema)
    for (const m of text.matchAll(/"(anyOf|oneOf)":\[(.*?)\]\}/g)) expect(m[2]).not.toContain('"default"')
  })
})
