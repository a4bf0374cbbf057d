// What `weir keys generate` prints to paste into the credential: the key's `$file` as the channel
// file will resolve it (relative to the channel file's directory, taken to be the working directory;
// absolute for a key outside it), as the client authentication (private_key_jwt) and, labelled, as
// the assertion of the jwt_bearer grant. Each form, pasted into a channel file in the working
// directory, fetches a token.
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { main } from '../../engine/cli.ts'
import { startAuthorizationServer, type AuthorizationServer } from '../../engine/embedded/authorization-server.ts'
import { tempDir } from '../_setup.ts'

let as: AuthorizationServer
let root: Awaited<ReturnType<typeof tempDir>>
beforeAll(async () => {
  as = await startAuthorizationServer()
  root = await tempDir('weir-keys-snippet-')
})
afterAll(async () => {
  await as.close()
  await root.cleanup()
})

/** Runs the CLI in `cwd`, capturing what it prints. */
async function weir(argv: string[], cwd: string): Promise<{ code: number; out: string; err: string }> {
  let out = ''
  let err = ''
  const code = await main(argv, { out: (t) => { out += `${t}\n` }, err: (t) => { err += `${t}\n` }, env: {}, cwd, isTTY: false })
  return { code, out, err }
}

/** What follows the line `label` of the output, up to the next blank line: a JSON block. */
function blockAfter(out: string, label: string): Record<string, any> {
  const lines = out.split('\n')
  const at = lines.indexOf(label)
  expect(at, `no line "${label}" in:\n${out}`).toBeGreaterThanOrEqual(0)
  const end = lines.indexOf('', at + 1)
  return JSON.parse(lines.slice(at + 1, end < 0 ? undefined : end).join('\n'))
}

const CLIENT_AUTH = 'as its client authentication (private_key_jwt), e.g. with the client_credentials grant:'
const ASSERTION = 'or as the assertion of the jwt_bearer grant:'

/** `weir token` with `credential` in a channel file in `dir`: its exit status and what it printed. */
async function tokenWith(dir: string, credential: Record<string, unknown>) {
  await writeFile(join(dir, 'channel.json'), JSON.stringify({
    name: 'keys-snippet', credentials: { api: credential },
    source: { type: 'http-listener', config: { port: 0 } },
    destinations: [{ name: 'out', type: 'file', config: { directory: join(dir, 'out') } }],
  }))
  return weir(['token', 'channel.json', 'api', '--data-dir', join(dir, 'data')], dir)
}

describe('weir keys generate prints the credential\'s signing block with a $file that resolves', () => {
  it('a key under the working directory: its relative path, both forms labelled; each fetches a token from a channel file there', async () => {
    const dir = join(root.dir, 'project')
    await mkdir(dir)
    const r = await weir(['keys', 'generate', '--alg', 'ES256', '--kid', 'snip-1', '--out', 'keys'], dir)
    expect([r.code, r.err]).toEqual([0, ''])
    expect(r.out).toContain('in the credential, for a channel file in the current directory ("$file" paths resolve against the channel file\'s directory')
    const clientAuth = blockAfter(r.out, CLIENT_AUTH)
    expect(clientAuth).toEqual({ clientAuth: { method: 'private_key_jwt', alg: 'ES256', kid: 'snip-1', privateKey: { $file: 'keys/snip-1.private.pem' } } })
    const assertion = blockAfter(r.out, ASSERTION)
    expect(assertion).toEqual({ grant: 'jwt_bearer', assertion: { alg: 'ES256', kid: 'snip-1', privateKey: { $file: 'keys/snip-1.private.pem' } } })
    const jwks = blockAfter(r.out, '')

    as.registerClient({ clientId: 'snip-client', authMethod: 'private_key_jwt', jwks: jwks as never })
    const viaClientAuth = await tokenWith(dir, { tokenUrl: as.tokenUrl, clientId: 'snip-client', ...clientAuth })
    expect([viaClientAuth.code, viaClientAuth.err]).toEqual([0, ''])
    expect(viaClientAuth.out).toMatch(/^credential api: Bearer token\n/)

    as.registerClient({ clientId: 'snip-bearer', authMethod: 'none', jwks: jwks as never, grants: ['jwt_bearer'] })
    const viaAssertion = await tokenWith(dir, { tokenUrl: as.tokenUrl, clientId: 'snip-bearer', ...assertion })
    expect([viaAssertion.code, viaAssertion.err]).toEqual([0, ''])
    expect(viaAssertion.out).toContain('(jwt_bearer grant)')
  })

  it('a key outside the working directory: its absolute path', async () => {
    const dir = join(root.dir, 'elsewhere')
    await mkdir(dir)
    const out = join(root.dir, 'vault')
    const r = await weir(['keys', 'generate', '--alg', 'ES256', '--kid', 'snip-2', '--out', out], dir)
    expect([r.code, r.err]).toEqual([0, ''])
    expect(r.out).toContain('\nin the credential, in the channel file:\n')
    expect(blockAfter(r.out, CLIENT_AUTH).clientAuth.privateKey).toEqual({ $file: join(out, 'snip-2.private.pem') })
    expect(blockAfter(r.out, ASSERTION).assertion.privateKey).toEqual({ $file: join(out, 'snip-2.private.pem') })
  })
})
