import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { runChannelTest, unknownMllpDestinationsOfFile } from '../../engine/harness/run.ts'
import { runCli } from '../_cli.ts'
import { loadTestFile } from '../../engine/harness/test-file.ts'
import { loadChannel } from '../../engine/load.ts'

const DIR = mkdtempSync(join(tmpdir(), 'weir-harness-mllp-dest-'))
afterAll(() => rmSync(DIR, { recursive: true, force: true }))
const write = (name: string, data: unknown) => {
  const p = join(DIR, name)
  writeFileSync(p, JSON.stringify(data))
  return p
}

// A lab result for a patient whose name latin1 and utf-8 write differently.
const ORU = 'MSH|^~\\&|WEIR|GENHOSP|LIS|LAB|20260301094500||ORU^R01^ORU_R01|RES00001|P|2.5.1\rPID|1||203713^^^GENHOSP^MR||MÜLLER^JOSÉ||19700101|M\rOBX|1|NM|2345-7^Glucose^LN||142|mg/dL|70-99|H|||F'
const send = { send: { body: ORU, contentType: 'x-application/hl7-v2+er7' } }

// A hospital channel with two MLLP destinations (the lab system in utf-8, the archive in latin1) and a file copy.
const channel = write('results.json', {
  name: 'results-out',
  source: { type: 'http-listener', config: { port: 7999, path: '/in' } },
  destinations: [
    { name: 'lab', type: 'mllp', config: { host: 'lis.hospital.example', port: 2575, ackTimeoutMs: 2000 }, retry: { maxAttempts: 2, initialDelayMs: 20, maxDelayMs: 50 } },
    { name: 'archive', type: 'mllp', config: { host: 'archive.hospital.example', port: 2575, encoding: 'latin1', ackTimeoutMs: 2000 }, retry: { maxAttempts: 1 } },
    { name: 'audit', type: 'file', config: { directory: 'audit' } },
  ],
})

// The lab answers AE on every attempt (two, then the message is in error there); the archive answers AA once.
const labRefuses = { destinations: { lab: { answers: [{ ack: 'AE', text: 'database busy' }] } } }
const labErrorArchiveDelivered = { status: 'error', destinations: { lab: 'error', archive: 'delivered', audit: 'delivered' }, error: 'database busy' }
const rightPerDestination = {
  count: 3,
  destinations: {
    lab: { count: 2, messages: [{ matches: '\\|ORU\\^R01\\^ORU_R01\\|RES00001\\|', count: 2 }] },
    archive: { count: 1, messages: [{ matches: 'RES00001', count: 1 }] },
  },
}

const failures = async (t: string) => (await runChannelTest(t)).cases.map((c) => c.failures)

describe('weir test: a receiver per mllp destination', () => {
  it('mllp.destinations scripts one destination apart: the lab answers AE and the message is retried then in error there, the archive answers AA and delivers', async () => {
    const t = write('answers.test.json', {
      channel,
      cases: [{
        name: 'lab refuses, archive takes it',
        mllp: labRefuses,
        steps: [send],
        expect: {
          messages: [labErrorArchiveDelivered],
          mllp: rightPerDestination,
          deliveries: { lab: { count: 0 }, archive: { count: 1, bodyMatches: 'RES00001' } },
        },
      }],
    })
    expect(await failures(t)).toEqual([[]])
  })

  it('mllp.answers still answers for every mllp destination that mllp.destinations does not name', async () => {
    const t = write('default.test.json', {
      channel,
      mllp: { answers: [{ ack: 'AR', text: 'unknown patient 203713' }], destinations: { archive: { answers: [{ ack: 'AA' }] } } },
      cases: [
        {
          name: 'the file\'s script: the lab answers AR by default, the archive AA by name',
          steps: [send],
          expect: {
            messages: [{ status: 'error', destinations: { lab: 'error', archive: 'delivered' }, error: 'answered AR for control id RES00001: unknown patient 203713' }],
            mllp: { count: 2, destinations: { lab: { count: 1 }, archive: { count: 1 } } },
          },
        },
        {
          // A case's mllp replaces the file's as a whole: no AR default, no archive entry.
          name: 'a case\'s script replaces the file\'s',
          mllp: { answers: [{ ack: 'AA' }] },
          steps: [send],
          expect: { messages: [{ status: 'delivered', destinations: { lab: 'delivered', archive: 'delivered' } }], mllp: { count: 2 } },
        },
      ],
    })
    expect(await failures(t)).toEqual([[], []])
  })

  it('each receiver reads and answers in its own destination\'s encoding (utf-8 lab, latin1 archive)', async () => {
    const t = write('encoding.test.json', {
      channel,
      cases: [{
        name: 'umlauts arrive as written at both',
        steps: [send],
        expect: {
          messages: [{ status: 'delivered', destinations: { lab: 'delivered', archive: 'delivered' } }],
          mllp: { count: 2, messages: [{ matches: 'MÜLLER\\^JOSÉ', count: 2 }], destinations: { lab: { messages: [{ matches: 'MÜLLER\\^JOSÉ', count: 1 }] }, archive: { messages: [{ matches: 'MÜLLER\\^JOSÉ', count: 1 }] } } },
        },
      }],
    })
    expect(await failures(t)).toEqual([[]])
  })

  it('expect.mllp.destinations fails naming the destination: counts and matches of another destination\'s receiver, an unknown name, a non-mllp destination', async () => {
    const t = write('wrong.test.json', {
      channel,
      cases: [
        {
          // The right expectations, with the answers swapped: now the archive refuses (maxAttempts 1) and the lab delivers.
          name: 'answers swapped',
          mllp: { destinations: { archive: { answers: [{ ack: 'AE', text: 'disk full' }] } } },
          steps: [send],
          expect: { mllp: { destinations: rightPerDestination.destinations } },
        },
        {
          name: 'wrong names and counts',
          mllp: labRefuses,
          steps: [send],
          expect: {
            mllp: {
              count: 4,
              destinations: {
                lab: { count: 1, messages: [{ matches: 'ADT\\^A01' }] },
                archive: { count: 1 },
                labb: { count: 1 },
                audit: { count: 1 },
              },
            },
          },
        },
      ],
    })
    const [swapped, wrong] = await failures(t)
    expect(swapped).toEqual([
      'expect.mllp.destinations.lab.count: the MLLP receiver of "lab" received 1 messages, expected 2 (ORU^R01 RES00001 → AA)',
      'expect.mllp.destinations.lab.messages[0]: 1 received message(s) match /\\|ORU\\^R01\\^ORU_R01\\|RES00001\\|/, expected 2 (received: ORU^R01 RES00001 → AA)',
    ])
    expect(wrong).toEqual([
      // Over all receivers, in arrival order (the lab's first attempt and the archive's copy leave together): each named by its destination.
      expect.stringMatching(/^expect\.mllp\.count: the 2 MLLP receivers received 3 messages, expected 4 \((?=.*archive: ORU\^R01 RES00001 → AA)(?=(.*lab: ORU\^R01 RES00001 → AE){2})/),
      'expect.mllp.destinations.lab.count: the MLLP receiver of "lab" received 2 messages, expected 1 (ORU^R01 RES00001 → AE; ORU^R01 RES00001 → AE)',
      'expect.mllp.destinations.lab.messages[0]: 0 received message(s) match /ADT\\^A01/ (received: ORU^R01 RES00001 → AE; ORU^R01 RES00001 → AE)',
      'expect.mllp.destinations.labb: the channel has no mllp destination "labb" (its mllp destinations: "lab", "archive")',
      'expect.mllp.destinations.audit: the channel has no mllp destination "audit" (its mllp destinations: "lab", "archive")',
    ])
  })

  it('a name under mllp.destinations that is no mllp destination of the channel fails the case at its JSON pointer (the file\'s and the case\'s)', async () => {
    const delivered = { name: 'delivered', steps: [send], expect: { mllp: { count: 2 } } }
    const t = write('typo.test.json', {
      channel,
      mllp: { destinations: { labb: { answers: [{ ack: 'AE' }] } } },
      cases: [delivered, { ...delivered, name: 'case typo', mllp: { destinations: { audit: { answers: [{ ack: 'AR' }] }, 'lab/2': {} } } }],
    })
    const fileTypo = `${t}#/mllp/destinations/labb: the channel has no mllp destination "labb" (its mllp destinations: "lab", "archive")`
    const caseProblems = [
      `${t}#/cases/1/mllp/destinations/audit: the channel's destination "audit" is of type file, not mllp (its mllp destinations: "lab", "archive")`,
      `${t}#/cases/1/mllp/destinations/lab~12: the channel has no mllp destination "lab/2" (its mllp destinations: "lab", "archive")`,
    ]
    expect(await failures(t)).toEqual([[fileTypo], [fileTypo, ...caseProblems]])
    // What `weir validate` can report of the whole file before any case runs: each problem once.
    const file = await loadTestFile(t)
    expect(unknownMllpDestinationsOfFile(file, await loadChannel(file.channel)).map((p) => `${p.file}#${p.pointer}: ${p.message}`)).toEqual([fileTypo, ...caseProblems])
    // And weir validate does report them, exit 1.
    const v = await runCli(['validate', t, '--quiet'])
    // (The channel's own warnings come first: its http-listener accepts JSON for mllp destinations.)
    const lines = v.err.trim().split('\n')
    expect([v.code, lines.filter((l) => !l.startsWith('warning: '))]).toEqual([1, [fileTypo, ...caseProblems, '0 valid, 1 invalid']])
    expect(lines.filter((l) => l.startsWith('warning: ')).map((l) => l.slice(0, l.indexOf(': mllp sends')))).toEqual([0, 1].map((i) => `warning: ${channel}#/destinations/${i}`))
  })

  it('a channel without an mllp destination: mllp.destinations names none of its destinations, and no receiver is started', async () => {
    const ch = write('no-mllp.json', {
      name: 'no-mllp',
      source: { type: 'http-listener', config: { port: 7999, path: '/in' } },
      destinations: [{ name: 'audit', type: 'file', config: { directory: 'audit' } }],
    })
    const t = write('no-mllp.test.json', {
      channel: ch,
      cases: [
        { name: 'a script for no mllp destination', mllp: { destinations: { lab: {} } }, steps: [send], expect: {} },
        { name: 'an expectation for none', steps: [send], expect: { mllp: { destinations: { lab: { count: 0 } } } } },
      ],
    })
    expect(await failures(t)).toEqual([
      [`${t}#/cases/0/mllp/destinations/lab: the channel has no mllp destination "lab" (it has no mllp destination at all)`],
      ['expect.mllp: the channel has no mllp destination'],
    ])
  })
})
