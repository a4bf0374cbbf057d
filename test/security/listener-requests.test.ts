import { request } from 'undici'
import { expect, it } from 'vitest'
import { startListenerChannel, useStarted } from './_listener.ts'

const started = useStarted()

async function post(url: string, body: string, headers: Record<string, string> = {}) {
  const res = await request(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body })
  return { status: res.statusCode, body: await res.body.json() as Record<string, unknown> }
}

const nested = (depth: number) => '['.repeat(depth) + ']'.repeat(depth)

// Review finding: 100,000 nested `[` in a JSON body got a 500 and a logged stack trace.
it('answers 400 to JSON nested 100,000 deep, and logs no error and no stack trace', async () => {
  const channel = (started.channel = await startListenerChannel({}))
  expect(await post(channel.url, nested(100_000))).toEqual({ status: 400, body: { error: 'JSON body nested deeper than maxJsonDepth 64' } })
  expect(channel.logs().find((l) => l.msg === 'request refused')).toMatchObject({ status: 400, reason: 'JSON body nested deeper than maxJsonDepth 64' })
  expect(channel.logs().filter((l) => l.level >= 50)).toEqual([])
  expect(channel.rawLog()).not.toMatch(/RangeError|stack/)
})

it.each([
  ['64 deep (the default maxJsonDepth)', 202, nested(64)],
  ['65 deep', 400, nested(65)],
  ['with brackets inside strings, escaped quotes included', 202, JSON.stringify({ a: '\\"' + '['.repeat(500), b: [[1]] })],
  ['of objects and arrays mixed, 65 deep', 400, '{"a":'.repeat(33) + nested(32) + '}'.repeat(33)],
])('JSON %s → %s', async (_, status, body) => {
  const channel = (started.channel = await startListenerChannel({}))
  expect((await post(channel.url, body)).status).toBe(status)
})

// Review finding: the "request refused" log line includes the query string (`?ssn=…`) and the
// invalid-JSON reason quotes the body's first characters.
it('logs a refusal without the query string and without an excerpt of the body', async () => {
  const channel = (started.channel = await startListenerChannel({}))
  const res = await post(`${channel.url}/?ssn=078-05-1120`, 'ssn=219-09-9999 name=Jane Roe')
  expect(res).toEqual({ status: 400, body: { error: 'invalid JSON body (unexpected character)' } })
  expect(channel.logs().find((l) => l.msg === 'request refused')).toMatchObject({ status: 400, path: '/', reason: 'invalid JSON body (unexpected character)' })
  expect((await post(channel.url, '{"ssn":"219-09-9999" "name":"Jane Roe"}')).body).toEqual({ error: 'invalid JSON body (at position 21)' })
  expect((await post(channel.url, '{"ssn":"219-09-9999",')).body).toEqual({ error: 'invalid JSON body (at position 21)' })
  expect((await post(channel.url, '')).body).toEqual({ error: 'invalid JSON body (it ends early)' })
  for (const secret of ['078-05-1120', '219-09-9999', 'Jane', 'ssn=']) expect(channel.rawLog()).not.toContain(secret)
})
