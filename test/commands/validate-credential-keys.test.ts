// weir validate parses a credential's key material as weir run does (no network): what run refuses
// (a key that is not a key, an algorithm the key cannot sign with, a Google key file that is not
// its JSON) validate reports at the setting's JSON pointer, exit 1.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateKeyPairSync } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runCli } from '../_cli.ts'

let dir: string
const ecPem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weir-validate-keys-'))
  await writeFile(join(dir, 'ec.pem'), ecPem)
  await writeFile(join(dir, 'not-a-key.pem'), 'hello, this is not a key\n')
  await writeFile(join(dir, 'not-json.json'), 'client_email = a@b\n')
  await writeFile(join(dir, 'corrupt-key.json'), JSON.stringify({ type: 'service_account', client_email: 'svc@p.iam.gserviceaccount.com', private_key_id: 'pk1', private_key: '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n' }))
})
afterAll(() => rm(dir, { recursive: true, force: true }))

async function channel(name: string, credential: Record<string, unknown>): Promise<string> {
  const file = join(dir, `${name}.json`)
  await writeFile(file, JSON.stringify({
    name, credentials: { [name]: credential },
    source: { type: 'http-listener', config: { port: 0 } },
    destinations: [{ name: 'out', type: 'http', config: { url: 'http://127.0.0.1:9/x', credential: name } }],
  }))
  return file
}

const jwt = (clientAuth: Record<string, unknown>) => ({ tokenUrl: 'http://127.0.0.1:9/token', clientId: 'c', clientAuth: { method: 'private_key_jwt', ...clientAuth } })
const google = (file: string) => ({ preset: 'google-service-account', scope: 'https://www.googleapis.com/auth/cloud-platform', assertion: { keyFile: { $file: file } } })

describe('weir validate: credential key material', () => {
  it.each([
    ['algmismatch', jwt({ alg: 'RS384', kid: 'k', privateKey: { $file: 'ec.pem' } }), '#/credentials/algmismatch/clientAuth/alg: RS384 cannot be used with a ec key'],
    ['notakey', jwt({ alg: 'ES256', kid: 'k', privateKey: { $file: 'not-a-key.pem' } }), '#/credentials/notakey/clientAuth/privateKey: not a private key (expected PKCS#8 PEM or a private JWK)'],
    ['googlenotjson', google('not-json.json'), '#/credentials/googlenotjson/assertion/keyFile: not a service-account JSON key with private_key'],
    ['googlecorrupt', google('corrupt-key.json'), '#/credentials/googlecorrupt/assertion/keyFile: the key file\'s private_key: not a private key'],
  ])('%s: exit 1, the problem at its pointer', async (name, credential, problem) => {
    const file = await channel(name, credential)
    const r = await runCli(['validate', file])
    expect([r.code, r.out + r.err]).toEqual([1, expect.stringContaining(problem)])
  })

  it('a good key validates', async () => {
    const r = await runCli(['validate', await channel('good', jwt({ alg: 'ES256', kid: 'k', privateKey: { $file: 'ec.pem' } }))])
    expect([r.code, r.err]).toEqual([0, ''])
  })
})
