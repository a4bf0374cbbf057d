import { afterEach, describe, expect, it } from 'vitest'
import { startTestChannel, textCollector, type TestChannel } from '../reliability/_helpers.ts'

// A newcomer's walkthrough: a map calling an undefined function sent its messages to error with
// "map expression failed: Attempted to invoke a non-function", naming neither the function nor
// where it is. The reason now says the position and the token, as a compile-time problem does, and
// never the value the expression failed on (JSONata's error carries it: here the MRN).

const MRN = 'MRN-5550172'
let ch: TestChannel | undefined
let collector: ReturnType<typeof textCollector>
afterEach(async () => {
  await ch?.close()
  ch = undefined
})

async function start(parts: { filters?: unknown[]; options?: Record<string, unknown> }) {
  collector = textCollector()
  ch = await startTestChannel({
    name: 'jsonata-errors',
    source: { type: 'http-listener', config: { port: 0, path: '/in' } },
    ...parts,
    destinations: [{ name: 'out', type: 'file', config: { directory: 'out' } }],
  }, { log: collector.log })
  return ch
}

/** Posts a patient and waits for its message to settle; the message as stored. */
async function send(c: TestChannel) {
  const id = await c.post({ patient: { mrn: MRN } })
  await c.handle.whenIdle({ timeoutMs: 5000 })
  return (await c.store.get(id))!.message
}

describe('a JSONata expression failing at run time in a channel', () => {
  it('a map filter: the message in error says the position and the function named', async () => {
    const c = await start({ filters: [{ type: 'map', config: { jsonata: "{ 'resourceType': 'Patient', 'x': $undefinedFn(patient.mrn) }" } }] })
    const m = await send(c)
    expect([m.status, m.error]).toEqual(['error', 'filters/0: ERR_DELIVERY_PERMANENT: map expression failed at position 47 ($undefinedFn): Attempted to invoke a non-function'])
  })

  it('orderBy: the message in error says the position and the operator, not the MRN it was applied to', async () => {
    const c = await start({ options: { orderBy: 'patient.mrn + 1' } })
    const m = await send(c)
    expect([m.status, m.error]).toEqual(['error', 'options/orderBy "patient.mrn + 1": the expression failed at position 13 (+): The left side of the "+" operator must evaluate to a number (options.orderByDefault gives such messages a key)'])
    expect(collector.texts.join('')).toContain('the expression failed at position 13 (+)')
    expect(collector.texts.join('')).not.toContain(MRN)
  })
})
