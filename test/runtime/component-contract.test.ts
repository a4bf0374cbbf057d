import { describe, it, expect } from 'vitest'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { defineComponent, type ComponentDefinition } from '../../shared/component.ts'
import { createLogger } from '../../shared/log/index.ts'
import { loadComponentModule } from '../../shared/config/registry.ts'
import type { ConfigError } from '../../shared/errors.ts'
import { feedSource, destination, filter, useRuntimeFixture } from './_helpers.ts'

// The component contract as the runtime holds a user's component to it: what a filter returns,
// what create() returns or throws, what a component throws, and what deliver() resolves to.

const refusal = (): never => { throw new Error('expected a refusal') }
const rt = useRuntimeFixture({ pollIntervalMs: 50 })

function capture() {
  const lines: Record<string, unknown>[] = []
  const log = createLogger({ level: 'debug', pretty: false, destination: new Writable({ write(chunk, _enc, cb) { lines.push(JSON.parse(String(chunk))); cb() } }) })
  return { log, lines }
}

const named = (type: string, process: (m: any) => any): ComponentDefinition<'filter'> => ({ ...filter(process), type })

describe('what a filter returns', () => {
  it.each([
    ['undefined (a forgotten return)', () => undefined, 'undefined'],
    ['a plain object without body', () => ({ patient: 1 }), 'an object without "body"'],
    ['a string', () => 'ok', 'a string'],
    ['a number', () => 42, 'a number'],
    ['an array holding a non-message', (m: unknown) => [m, 'x'], 'an array whose item 1 is a string'],
  ])('%s sends the message to error at once, naming the filter', async (_what, process, got) => {
    const src = feedSource()
    const h = await rt.start({ source: src.definition, filters: [named('badfilter', process)], destinations: [destination('api', rt.api.url)] })
    const { id } = await src.emit({ a: 1 })
    await h.whenIdle()
    const d = (await rt.store.get(id))!
    expect(d.message.status).toBe('error')
    expect(d.message.error).toBe(`filters/0 (badfilter): process() returned ${got}; return the message, null to drop it, or an array of messages`)
    expect(rt.api.received).toEqual([])
  })

  it('null drops, an array of messages splits, and a message-shaped object continues with what it leaves out taken from the input', async () => {
    const src = feedSource()
    const h = await rt.start({
      source: src.definition,
      filters: [named('shaper', (m) => (m.body.drop ? null : m.body.split ? [{ body: 1 }, { body: 2 }] : { body: { shaped: true } }))],
      destinations: [destination('api', rt.api.url)],
    })
    const dropped = await src.emit({ drop: true })
    const split = await src.emit({ split: true })
    const shaped = await src.emit({ a: 1 })
    await h.whenIdle()
    expect((await rt.store.get(dropped.id))!.message.status).toBe('filtered')
    expect((await rt.store.get(split.id))!.message.status).toBe('delivered')
    const s = (await rt.store.get(shaped.id))!
    expect(s.message.status).toBe('delivered')
    expect(rt.api.received.map((r) => r.body)).toEqual([1, 2, { shaped: true }])
  })
})

describe('what create() returns or throws', () => {
  const start = (d: ComponentDefinition<'destination'>) => rt.start({ source: feedSource().definition, destinations: [destination('api', rt.api.url, { definition: d })] })

  it.each([
    ['an object without deliver()', () => ({ send() {} }), 'create() returned an object without deliver()'],
    ['undefined', () => undefined, 'create() returned undefined; expected an object with deliver()'],
    ['a close that is not a function', () => ({ deliver: async () => ({}), close: true }), 'create() returned an object whose close is not a function'],
  ])('a destination whose create() returns %s is refused at start, at its pointer', async (_what, create, message) => {
    const d = defineComponent({ type: 'lazy', kind: 'destination', description: 'd', configSchema: { type: 'object' }, create: create as never })
    const err = await start(d).then(refusal, (e) => e as ConfigError)
    expect(err.code).toBe('ERR_CONFIG_INVALID')
    expect(err.problems).toEqual([{ file: expect.stringMatching(/test\.json$/), pointer: '/destinations/api', code: 'ERR_COMPONENT_INVALID', message: `component "lazy": ${message}` }])
    expect(err.message).toMatch(/test\.json#\/destinations\/api: component "lazy": /)
  })

  it('a filter without process() and a source without start() are refused too', async () => {
    const f = defineComponent({ type: 'no-process', kind: 'filter', description: 'f', configSchema: { type: 'object' }, create: () => ({ run: () => null }) as never })
    const e1 = await rt.start({ source: feedSource().definition, filters: [f], destinations: [destination('api', rt.api.url)] }).then(refusal, (e) => e as ConfigError)
    expect(e1.problems.map((p) => [p.pointer, p.message])).toEqual([['/filters/0', 'component "no-process": create() returned an object without process()']])
    const s = defineComponent({ type: 'no-start', kind: 'source', description: 's', configSchema: { type: 'object' }, create: () => ({ stop() {} }) as never })
    const e2 = await rt.start({ source: s, destinations: [destination('api', rt.api.url)] }).then(refusal, (e) => e as ConfigError)
    expect(e2.problems.map((p) => [p.pointer, p.message])).toEqual([['/source', 'component "no-start": create() returned an object without start()']])
  })

  it('an exception in create() is a problem at the pointer; its stack goes to the debug log only', async () => {
    const { log, lines } = capture()
    const d = defineComponent({ type: 'boom', kind: 'destination', description: 'd', configSchema: { type: 'object' }, create: () => { throw new Error('cannot open the template') } })
    const err = await rt.start({ source: feedSource().definition, destinations: [destination('api', rt.api.url, { definition: d })] }, { log }).then(refusal, (e) => e as ConfigError)
    expect(err.code).toBe('ERR_CONFIG_INVALID')
    expect(err.problems).toEqual([expect.objectContaining({ pointer: '/destinations/api', code: 'ERR_COMPONENT_INVALID', message: expect.stringMatching(/^component "boom": create\(\) failed: cannot open the template( \(at .+\))?$/) })])
    expect(err.message).not.toMatch(/\n\s+at /)
    expect(lines.find((l) => l.level === 20 && String(l.msg).includes('create() failed'))).toBeDefined()
  })

  it('a module loaded by path is checked inside its own create(), naming the module (so wrappers of the instance cannot hide it)', async () => {
    await writeFile(join(rt.dir.path, 'x.ts'), `export default { type: 'x-dest', kind: 'destination', description: 'd', configSchema: { type: 'object' }, create: () => ({ send() {} }) }\n`)
    await writeFile(join(rt.dir.path, 'y.ts'), `export default { type: 'y-dest', kind: 'destination', description: 'd', configSchema: { type: 'object' }, create: () => { throw new Error('no template') } }\n`)
    const x = await loadComponentModule('./x.ts', rt.dir.path, 'destination')
    await expect(Promise.resolve(x.create({}, {} as never))).rejects.toMatchObject({ code: 'ERR_COMPONENT_INVALID', message: 'module "./x.ts": create() returned an object without deliver()' })
    const err = await rt.start({ source: feedSource().definition, destinations: [destination('api', rt.api.url, { definition: x as ComponentDefinition<'destination'> })] }).then(refusal, (e) => e as ConfigError)
    expect(err.problems.map((p) => [p.pointer, p.code, p.message])).toEqual([['/destinations/api', 'ERR_COMPONENT_INVALID', 'module "./x.ts": create() returned an object without deliver()']])
    const y = await loadComponentModule('./y.ts', rt.dir.path, 'destination')
    const err2 = await rt.start({ source: feedSource().definition, destinations: [destination('api', rt.api.url, { definition: y as ComponentDefinition<'destination'> })] }).then(refusal, (e) => e as ConfigError)
    expect(err2.problems.map((p) => p.message)).toEqual([expect.stringMatching(/^module "\.\/y\.ts": create\(\) failed: no template \(at y\.ts:1:\d+\)$/)])
  })
})

describe('how a thrown value is described', () => {
  it.each([
    ['an object with a message', { retryable: false, message: 'lookup refused' }, 'filters/0: lookup refused'],
    ['an object without one', { oops: true }, 'filters/0: {"oops":true}'],
    ['a long object, bounded', { text: 'x'.repeat(400) }, `filters/0: ${JSON.stringify({ text: 'x'.repeat(400) }).slice(0, 200)}…`],
    ['a string', 'plain words', 'filters/0: plain words'],
    ['a number', 7, 'filters/0: 7'],
  ])('%s', async (_what, thrown, reason) => {
    const src = feedSource()
    const h = await rt.start({ source: src.definition, filters: [filter(() => { throw thrown })], destinations: [destination('api', rt.api.url)] })
    const { id } = await src.emit({ a: 1 })
    await h.whenIdle()
    expect((await rt.store.get(id))!.message.error).toBe(reason)
  })

  it('a thrown object with a message and retryable: true is retried, its attempts described by the message', async () => {
    const src = feedSource()
    let n = 0
    const d = defineComponent({ type: 'flaky', kind: 'destination', description: 'd', configSchema: { type: 'object' }, create: () => ({ async deliver() { if (n++ === 0) throw { retryable: true, message: 'x' }; return {} } }) })
    const h = await rt.start({ source: src.definition, destinations: [destination('api', rt.api.url, { definition: d })] })
    const { id } = await src.emit({ a: 1 })
    await h.whenIdle()
    const got = (await rt.store.get(id))!
    expect(got.message.status).toBe('delivered')
    expect(got.attempts.map((a) => [a.outcome, a.error])).toEqual([['retryable', 'x'], ['delivered', undefined]])
  })
})

describe('where a bug in a component is', () => {
  it('a TypeError names the first frame in the user\'s module, relative to the channel directory, and nothing else of the stack', async () => {
    await mkdir(join(rt.dir.path, 'lab'), { recursive: true })
    await writeFile(join(rt.dir.path, 'lab', 'api-post.js'), [
      "export default { type: 'api-post', kind: 'destination', description: 'd', configSchema: { type: 'object' },",
      '  create: () => ({',
      '    async deliver(message) {',
      '      const nothing = message.attributes.none',
      '      return { status: nothing.foo }',
      '    },',
      '  }),',
      '}',
      '',
    ].join('\n'))
    const def = await loadComponentModule('./lab/api-post.js', rt.dir.path, 'destination')
    const src = feedSource()
    const h = await rt.start({ source: src.definition, destinations: [destination('api', rt.api.url, { definition: def as ComponentDefinition<'destination'> })] })
    const { id } = await src.emit({ a: 1 })
    await h.whenIdle()
    const got = (await rt.store.get(id))!
    expect(got.message.error).toMatch(/^api: Cannot read properties of undefined \(reading 'foo'\) \(at lab\/api-post\.js:5:\d+\)$/)
  })

  it('a Weir error gets no location', async () => {
    const { PermanentError } = await import('../../shared/errors.ts')
    const src = feedSource()
    const h = await rt.start({ source: src.definition, filters: [filter(() => { throw new PermanentError('refused') })], destinations: [destination('api', rt.api.url)] })
    const { id } = await src.emit({ a: 1 })
    await h.whenIdle()
    expect((await rt.store.get(id))!.message.error).toBe('filters/0: ERR_DELIVERY_PERMANENT: refused')
  })
})

describe('what deliver() resolves to', () => {
  it('a string is taken as delivered, with one warning per destination', async () => {
    const { log, lines } = capture()
    const d = defineComponent({ type: 'says-ok', kind: 'destination', description: 'd', configSchema: { type: 'object' }, create: () => ({ deliver: async () => 'ok' as never }) })
    const src = feedSource()
    const h = await rt.start({ source: src.definition, destinations: [destination('out', rt.api.url, { definition: d })] }, { log })
    const a = await src.emit({ a: 1 })
    const b = await src.emit({ a: 2 })
    await h.whenIdle()
    expect((await rt.store.get(a.id))!.message.status).toBe('delivered')
    expect((await rt.store.get(b.id))!.message.status).toBe('delivered')
    const warnings = lines.filter((l) => l.level === 40 && String(l.msg).includes('deliver() resolved'))
    expect(warnings.map((l) => l.msg)).toEqual(['destinations/out: deliver() resolved to a string; expected undefined or { status?, excerpt?, note? }'])
  })

  it('a result with fields of the wrong type keeps the message delivered, ignoring them, with the warning', async () => {
    const { log, lines } = capture()
    const d = defineComponent({ type: 'odd', kind: 'destination', description: 'd', configSchema: { type: 'object' }, create: () => ({ deliver: async () => ({ status: '200', excerpt: 12 }) as never }) })
    const src = feedSource()
    const h = await rt.start({ source: src.definition, destinations: [destination('out', rt.api.url, { definition: d })] }, { log })
    const { id } = await src.emit({ a: 1 })
    await h.whenIdle()
    const got = (await rt.store.get(id))!
    expect(got.message.status).toBe('delivered')
    expect(got.deliveries[0]).toMatchObject({ status: 'delivered' })
    expect(got.deliveries[0]!.responseStatus ?? undefined).toBeUndefined()
    expect(lines.filter((l) => l.level === 40).map((l) => l.msg)).toEqual(['destinations/out: deliver() resolved to an object whose status is a string and excerpt is a number; expected undefined or { status?, excerpt?, note? }'])
  })
})
