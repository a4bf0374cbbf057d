import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { runChannelTest } from '../../engine/harness/run.ts'
import { useLocalService } from './_local-service.ts'

const DIR = mkdtempSync(join(tmpdir(), 'weir-harness-loopback-'))
const write = (name: string, data: unknown) => {
  const p = join(DIR, name)
  writeFileSync(p, JSON.stringify(data))
  return p
}

// Stands for the user's real local API: a case must not reach it unless the test file keeps its URL.
const service = useLocalService(201, '{}')
afterAll(() => rmSync(DIR, { recursive: true, force: true }))

const channel = () => write('channel.json', {
  name: 'patients',
  source: { type: 'http-listener', config: { port: 7999, path: '/in' } },
  destinations: [{ name: 'api', type: 'http', config: { url: `${service.url}/patients`, method: 'POST' }, retry: { maxAttempts: 1 } }],
})
const api = [{ method: 'POST', path: '/patients', auth: false, answers: [{ status: 201 }] }]
const posted = {
  name: 'a patient is posted',
  steps: [{ send: { body: { mrn: '203713' } } }],
  expect: { requests: [{ method: 'POST', path: '/patients', count: 1, json: { mrn: '203713' } }], messages: [{ status: 'delivered' }] },
}

describe('weir test and a channel whose API URL is on loopback', () => {
  it('sends to the embedded API, never to the service listening at that address', async () => {
    const t = write('redirected.test.json', { channel: channel(), api, cases: [posted] })
    const r = await runChannelTest(t)
    expect(r.cases.map((c) => c.failures)).toEqual([[]])
    expect(service.received).toEqual([])
  })

  it('"keepUrls" leaves a loopback origin as written, and a case that finds the API empty says where the messages went', async () => {
    const t = write('kept.test.json', { channel: channel(), api, keepUrls: [service.url], cases: [posted] })
    const r = await runChannelTest(t)
    expect(service.received).toEqual(['POST /patients'])
    const failures = r.cases[0]!.failures
    expect(failures[0]).toMatch(/^expect\.requests\[0\]: 0 instead of 1 matching request .*; the API received 0$/)
    expect(failures).toContain(`what the channel sent to ${service.url} went to the service listening there, not to the embedded API: "keepUrls" keeps that origin`)
  })

  it('"keepUrls" takes loopback origins only, naming the entry', async () => {
    const t = write('remote.test.json', { channel: channel(), api, keepUrls: ['https://api.example'], cases: [posted] })
    await expect(runChannelTest(t)).rejects.toThrow(/#\/keepUrls\/0: must be a loopback origin such as "http:\/\/127\.0\.0\.1:18080"/)
  })
})
