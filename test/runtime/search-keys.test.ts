import type { ChildProcess } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { readAck } from '../../shared/hl7v2/index.ts'
import { connectMllp } from '../../shared/mllp/client.ts'
import { openSqliteStore } from '../../shared/store/index.ts'
import { startMllpReceiver } from '../../engine/embedded/mllp-receiver.ts'
import { weir } from '../security/_at-rest.ts'
import { startWeirRun, tempDir, until } from './_helpers.ts'

const fixtures = join(import.meta.dirname, '../fixtures')

let dir: Awaited<ReturnType<typeof tempDir>>
const children = new Set<ChildProcess>()
beforeEach(async () => { dir = await tempDir('weir-search-keys-') })
afterEach(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  children.clear()
  await dir.remove()
})

const listIds = async (data: string, ...args: string[]) => {
  const r = await weir(['messages', 'list', '--json', '--data-dir', data, ...args])
  expect(r.code, r.err).toBe(0)
  return (JSON.parse(r.out) as Array<{ id: string }>).map((m) => m.id)
}

describe('options.searchKeys through weir run and weir messages list --key', () => {
  it('JSON messages through the http-listener: --key mrn=… finds exactly that patient\'s messages', async () => {
    const file = join(dir.path, 'adt.json')
    await writeFile(file, JSON.stringify({
      name: 'adt',
      source: { type: join(fixtures, 'runtime/port-file-http-listener.ts'), config: { portFile: 'http.port' } },
      destinations: [{ name: 'out', type: 'file', config: { directory: join(dir.path, 'out') } }],
      options: { searchKeys: { mrn: 'patient.mrn', accession: 'orders.accession', broken: '$error("no")' } },
    }))
    const run = await startWeirRun(file, dir.path, 'http.port', children)
    const post = async (body: unknown) => {
      const res = await fetch(`http://127.0.0.1:${run.port}/`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
      expect(res.status).toBe(202)
      return ((await res.json()) as { id: string }).id
    }
    const ids: Record<string, string[]> = { '203713': [], '555': [] }
    for (const [i, mrn] of ['203713', '555', '203713', '555', '203713'].entries()) ids[mrn]!.push(await post({ patient: { mrn: i === 4 ? 203713 : mrn }, orders: [{ accession: `ACC${i}` }, { accession: 'SHARED' }] }))
    const none = await post({ patient: {} })
    const data = join(dir.path, 'data')
    const store = openSqliteStore({ dataDir: data, owner: false, create: false })
    try {
      await until(async () => (await store.list({ status: 'delivered' })).length === 6)
      const byKey = async (name: string, value: string) => (await store.list({ key: { name, value } })).map((m) => m.id)
      expect(await byKey('accession', 'ACC1')).toEqual([ids['555']![0]])
      expect(await byKey('accession', 'SHARED')).toHaveLength(5)
      expect(await byKey('broken', 'no')).toEqual([])
      expect((await store.list()).map((m) => m.id)).toContain(none)
    } finally {
      await store.close()
    }

    expect(await listIds(data, '--key', 'mrn=203713')).toEqual([...ids['203713']!].reverse())
    expect(await listIds(data, '--key', 'mrn=555', '--channel', 'adt', '--status', 'delivered')).toEqual([...ids['555']!].reverse())
    expect(await listIds(data, '--key', 'mrn=203713', '--status', 'error')).toEqual([])
    // A name no message is stored with: an error naming those there, not an empty list.
    const typo = await weir(['messages', 'list', '--data-dir', data, '--key', 'mnr=203713'])
    expect([typo.code, typo.err.trim(), typo.out]).toEqual([1, 'no message in the message log has search key "mnr"; did you mean "mrn"?; search keys there: accession, mrn; nothing listed', ''])
    const resubmitTypo = await weir(['messages', 'resubmit', '--data-dir', data, '--key', 'nosuchkey=1'])
    expect([resubmitTypo.code, resubmitTypo.err.trim()]).toEqual([1, 'no message in the message log has search key "nosuchkey"; search keys there: accession, mrn; nothing resubmitted'])

    const unknown = await weir(['messages', 'list', '--data-dir', data, '--channel-file', file, '--key', 'nosuchkey=1'])
    expect([unknown.code, unknown.err.trim()]).toEqual([2, 'weir messages: --key nosuchkey: channel adt has no search key "nosuchkey" (options.searchKeys: mrn, accession, broken)'])
    expect(await listIds(data, '--channel-file', file, '--key', 'mrn=555')).toEqual([...ids['555']!].reverse())
    const malformed = await weir(['messages', 'list', '--data-dir', data, '--key', 'mrn'])
    expect(malformed.code).toBe(2)
    expect(malformed.err).toContain('--key must be NAME=VALUE')
    run.child.kill('SIGTERM')
    await run.exited
  }, 60_000)

  it('ER7 messages through the mllp-listener: PID.3.1 is searchable, and orderBy PID.3.1 keeps each patient\'s order', async () => {
    const lab = await startMllpReceiver()
    try {
      const file = join(dir.path, 'lab.json')
      await writeFile(file, JSON.stringify({
        name: 'lab',
        source: { type: join(fixtures, 'mllp/port-file-mllp-listener.ts'), config: { portFile: 'mllp.port' } },
        destinations: [{ name: 'lab', type: 'mllp', config: { host: lab.host, port: lab.port, ackTimeoutMs: 5000 } }],
        options: { concurrency: 4, orderBy: 'PID.3.1', searchKeys: { mrn: 'PID.3.1', visit: 'PV1.19', second_id: 'PID.3[2].1' } },
      }))
      const run = await startWeirRun(file, dir.path, 'mllp.port', children)
      const adt = (n: number, mrn: string) => [
        `MSH|^~\\&|EPIC|GENHOSP|WEIR|HIE|20260301120000||ADT^A08^ADT_A01|KEY${n}|P|2.5.1`,
        `PID|1||${mrn}^^^GENHOSP^MR~X${mrn}^^^OTHER^PI||DOE^JANE||19800101|F`,
        `PV1|1|I|||||||||||||||||V${n}`,
      ].join('\r')
      const client = await connectMllp({ host: '127.0.0.1', port: run.port })
      const patients = ['100001', '100002', '100001', '100003', '100001', '100002']
      for (const [n, mrn] of patients.entries()) expect(readAck(await client.request(adt(n, mrn), 10_000)).code).toBe('AA')
      await client.end()
      await until(() => lab.received.length === patients.length)
      const data = join(dir.path, 'data')
      run.child.kill('SIGTERM')
      await run.exited

      const sent = await listIds(data, '--key', 'mrn=100001', '--channel', 'lab')
      expect(sent).toHaveLength(3)
      expect(await listIds(data, '--key', 'visit=V3')).toHaveLength(1)
      expect(await listIds(data, '--key', 'second_id=X100002')).toHaveLength(2)
      const store = openSqliteStore({ dataDir: data, owner: false, create: false })
      try {
        const stored = await store.list({ key: { name: 'mrn', value: '100001' }, order: 'asc' })
        expect(stored.map((m) => [m.id, m.orderKey])).toEqual(sent.reverse().map((id) => [id, '100001']))
      } finally {
        await store.close()
      }
      // Each patient's messages reached the lab in the order they arrived.
      for (const mrn of new Set(patients)) {
        const arrived = patients.flatMap((p, n) => (p === mrn ? [`KEY${n}`] : []))
        expect(lab.received.filter((r) => r.text.includes(`|${mrn}^`)).map((r) => r.controlId)).toEqual(arrived)
      }
    } finally {
      await lab.close()
    }
  }, 60_000)
})
