// weir keys rotate as the on-call engineer runs it on the Epic example: the JWKS it tells them to
// register is the set the provider needs until the new key signs (the current key and the new
// one), public members only.
import { createPrivateKey, generateKeyPairSync } from 'node:crypto'
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { JWK } from 'jose'
import type { CommandIO } from '../../engine/cli-io.ts'
import { run as keys } from '../../engine/commands/keys.ts'
import { publicJwk } from '../../shared/oauth/keys.ts'

const T0 = Date.parse('2030-01-01T00:00:00Z')
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'oth']

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weir-keys-rotate-'))
  await cp('channels', dir, { recursive: true })
})
afterAll(() => rm(dir, { recursive: true, force: true }))

function io(env: NodeJS.ProcessEnv = {}): CommandIO & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = []
  const stderr: string[] = []
  return { stdout, stderr, out: (t) => stdout.push(t), err: (t) => stderr.push(t), env, cwd: dir, isTTY: false }
}

/** The JWK Set printed last: from the line that opens it to the end. */
function printedSet(text: string): { keys: JWK[] } {
  const lines = text.split('\n')
  return JSON.parse(lines.slice(lines.lastIndexOf('{')).join('\n')) as { keys: JWK[] }
}

describe('weir keys rotate prints the JWKS to register', () => {
  it('holds the current key and the new one, public members only, and says so', async () => {
    const o = io()
    expect(await keys(['rotate', 'epic-adt-to-fhir.json', 'epic', '--out', 'keys/', '--kid', 'weir-epic-next'], o, { now: () => T0 })).toBe(0)
    const text = o.stdout.join('\n')
    const set = printedSet(text)
    expect(set.keys.map((k) => k.kid)).toEqual(['weir-epic-test-2026', 'weir-epic-next'])
    const current = await publicJwk(createPrivateKey(await readFile(join(dir, 'test-keys/epic.pem'), 'utf8')), 'RS384', 'weir-epic-test-2026')
    expect(set.keys[0]).toEqual(current)
    const next = await publicJwk(createPrivateKey(await readFile(join(dir, 'keys/weir-epic-next.private.pem'), 'utf8')), 'RS384', 'weir-epic-next')
    expect(set.keys[1]).toEqual(next)
    for (const k of set.keys) for (const m of PRIVATE_MEMBERS) expect(k).not.toHaveProperty(m)
    expect(text).toContain('register this JWKS (it holds the current key and the new one)')
    expect(text).not.toContain('PRIVATE KEY')
    expect(o.stderr).toEqual([])
  })

  it('a later rotation prints every key of the list: the one signing, the one still to come and the new one', async () => {
    const o = io()
    expect(await keys(['rotate', 'epic-adt-to-fhir.json', 'epic', '--kid', 'weir-epic-third'], o, { now: () => T0 + 3_600_000 })).toBe(0)
    const text = o.stdout.join('\n')
    expect(printedSet(text).keys.map((k) => k.kid)).toEqual(['weir-epic-test-2026', 'weir-epic-next', 'weir-epic-third'])
    expect(text).toContain('register this JWKS (it holds the 3 keys of the list: the current key, the new one and 1 other)')
  })

  it('when a current key cannot be read here, prints the new key alone and says to add it, naming what could not be read', async () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey
    const file = join(dir, 'env-key.json')
    const channel = JSON.parse(await readFile(join(dir, 'fhir-lab-poll.json'), 'utf8'))
    const name = Object.keys(channel.credentials)[0]!
    channel.credentials[name].clientAuth.privateKey = { $env: 'WEIR_TEST_POLLER_KEY' }
    await writeFile(file, JSON.stringify(channel, null, 2))
    const o = io()
    expect(await keys(['rotate', 'env-key.json', name, '--kid', 'poller-next', '--out', 'keys'], o, { now: () => T0 })).toBe(0)
    const text = o.stdout.join('\n')
    expect(printedSet(text).keys.map((k) => k.kid)).toEqual(['poller-next'])
    expect(text).toContain('add this key to the JWKS registered with the provider, keeping the keys registered now')
    expect(text).toContain(`env-key.json#/credentials/${name}/clientAuth/keys/0/privateKey: environment variable "WEIR_TEST_POLLER_KEY" is not set`)
    // With the variable set, the same credential prints the whole set.
    const again = io({ WEIR_TEST_POLLER_KEY: ec.export({ type: 'pkcs8', format: 'pem' }).toString() })
    expect(await keys(['rotate', 'env-key.json', name, '--kid', 'poller-third', '--out', 'keys'], again, { now: () => T0 })).toBe(0)
    expect(printedSet(again.stdout.join('\n')).keys.map((k) => k.kid)).toEqual(['weir-poller-test-2026', 'poller-next', 'poller-third'])
  })
})
