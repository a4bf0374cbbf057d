import { describe, expectTypeOf, it } from 'vitest'
import { defineComponent, withBody, type ConfigOf, type JsonSchema } from '../../shared/component.ts'
import { secretSchema } from '../../shared/config/secret-schema.ts'
import type { Secret } from '../../shared/secret.ts'
import type { HttpConfig } from '../../components/destinations/http.ts'
import type { ScriptConfig } from '../../components/filters/script.ts'

// Type-level tests: `npm test` runs tsc over them; a wrong type fails the build.
describe('config types read from the schema', () => {
  it('makes defaulted fields present, keeps optional ones optional and resolves secrets to Secret', () => {
    const schema = {
      type: 'object', additionalProperties: false, required: ['field'],
      properties: {
        field: { type: 'string', minLength: 1, description: 'Field to add.' },
        value: { type: 'string', default: 'weir', description: 'Its value.' },
        mode: { enum: ['add', 'replace'], default: 'add', description: 'How.' },
        limit: { type: 'integer', nullable: true, description: 'At most.' },
        apiKey: secretSchema('Key.'),
        headers: { type: 'object', default: {}, additionalProperties: secretSchema('Header value.'), description: 'Secret headers.' },
      },
    } as const
    expectTypeOf<ConfigOf<typeof schema>>().toEqualTypeOf<{
      field: string; value: string; mode: 'add' | 'replace'; limit?: number | null; apiKey?: Secret; headers: { [x: string]: Secret }
    }>()
  })

  it('types create() and check() from configSchema, with no any', () => {
    const def = defineComponent({
      type: 'stamp', kind: 'filter', description: 'Adds a field.',
      configSchema: { type: 'object', additionalProperties: false, required: ['field'], properties: { field: { type: 'string', description: 'Field.' } } },
      check: (config) => (config.field.startsWith('_') ? [['/field', 'must not start with "_"']] : []),
      create: (config) => ({ process: (m) => withBody(m, { ...(m.body as object), [config.field]: true }) }),
    })
    expectTypeOf(def.create).parameter(0).toEqualTypeOf<Readonly<{ field: string }>>()
    expectTypeOf(def.kind).toEqualTypeOf<'filter'>()
  })

  it('gives the built-ins their types from their schemas, and unknown (not any) to an untyped schema', () => {
    expectTypeOf<HttpConfig['secretHeaders']>().toEqualTypeOf<{ [x: string]: Secret }>()
    expectTypeOf<HttpConfig['method']>().toEqualTypeOf<'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'GET'>()
    expectTypeOf<HttpConfig['timeoutMs']>().toEqualTypeOf<number>()
    expectTypeOf<ScriptConfig['options']>().toEqualTypeOf<{ [x: string]: unknown }>()
    expectTypeOf<ConfigOf<JsonSchema>>().toBeUnknown()
  })
})
