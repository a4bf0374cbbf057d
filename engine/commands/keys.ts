import { generateKeyPairSync } from 'node:crypto'
import { mkdir, open } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { calculateJwkThumbprint, type JWK } from 'jose'
import type { CommandIO } from '../cli-io.ts'
import { errorCodes } from '../../shared/errors.ts'
import { publicJwk } from '../../shared/oauth/keys.ts'

export const summary = 'generate a signing key pair (private PEM mode 0600, public JWKS to register with a provider)'
export const usage = `usage: weir keys generate --alg ALG [--kid KID] [--out DIR]

Generates a key pair for private_key_jwt or jwt-bearer assertions. Writes
  <out>/<kid>.private.pem   PKCS#8 private key, file mode 0600 (reference it as { "$file": "..." })
  <out>/<kid>.jwks.json     public JWKS to register with the provider (e.g. Epic, Azure)
and prints the JWKS. Never overwrites an existing file.

  --alg   RS256 | RS384 | PS256 | ES256 | ES384 | EdDSA (Epic: RS384 or ES384)
  --kid   key id (default: the JWK thumbprint)
  --out   directory (default: the working directory)`

const ALGS = ['RS256', 'RS384', 'PS256', 'ES256', 'ES384', 'EdDSA'] as const
type Alg = (typeof ALGS)[number]

/** Generates a key pair; returns the private PKCS#8 PEM and the public JWKS. */
export async function generateKeys(alg: Alg, kid?: string): Promise<{ kid: string; privatePem: string; jwks: { keys: JWK[] } }> {
  const { privateKey } = alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : alg === 'ES384' ? generateKeyPairSync('ec', { namedCurve: 'P-384' })
    : alg === 'EdDSA' ? generateKeyPairSync('ed25519')
    : generateKeyPairSync('rsa', { modulusLength: 3072 })
  const jwk = await publicJwk(privateKey, alg)
  const id = kid ?? (await calculateJwkThumbprint(jwk))
  return { kid: id, privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), jwks: { keys: [{ ...jwk, kid: id }] } }
}

async function writeNew(file: string, content: string, mode: number): Promise<void> {
  let fh
  try {
    fh = await open(file, 'wx', mode)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new errorCodes.ERR_FILE_ACCESS(`${file} already exists; not overwriting it`)
    throw new errorCodes.ERR_FILE_ACCESS(`cannot write ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
  }
  try {
    await fh.writeFile(content)
    await fh.chmod(mode)
  } finally {
    await fh.close()
  }
}

export async function run(args: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { alg: { type: 'string' }, kid: { type: 'string' }, out: { type: 'string' } } })
  if (positionals[0] !== 'generate' || positionals.length !== 1) {
    io.err(usage)
    return 2
  }
  const alg = values.alg as Alg | undefined
  if (!alg || !ALGS.includes(alg)) throw new errorCodes.ERR_USAGE(`--alg must be one of ${ALGS.join(', ')}${alg ? `; got ${alg}` : ''}`)
  if (values.kid !== undefined && !/^[A-Za-z0-9._-]{1,128}$/.test(values.kid)) throw new errorCodes.ERR_USAGE('--kid may contain letters, digits, ".", "_" and "-" only')
  const out = resolve(io.cwd, values.out ?? '.')
  await mkdir(out, { recursive: true })
  const { kid, privatePem, jwks } = await generateKeys(alg, values.kid)
  const keyFile = join(out, `${kid}.private.pem`)
  const jwksFile = join(out, `${kid}.jwks.json`)
  await writeNew(keyFile, privatePem, 0o600)
  await writeNew(jwksFile, JSON.stringify(jwks, null, 2) + '\n', 0o644)
  io.out([
    `private key: ${keyFile} (mode 0600; keep it secret)`,
    `public JWKS: ${jwksFile} (register it with the provider)`,
    '',
    JSON.stringify(jwks, null, 2),
    '',
    'in the channel file:',
    JSON.stringify({ clientAuth: { method: 'private_key_jwt', alg, kid, privateKey: { $file: keyFile } } }, null, 2),
  ].join('\n'))
  return 0
}
