// Helpers for the OAuth and HTTP tests only: no tests here.
import { generateKeyPairSync, type KeyObject } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { Writable } from 'node:stream'
import { inspect } from 'node:util'
import { join } from 'node:path'
import { exportJWK, type JWK } from 'jose'
import { createPublicKey } from 'node:crypto'
import { createLogger, type Logger } from '../../shared/log/index.ts'

export type Alg = 'RS256' | 'RS384' | 'PS256' | 'ES256' | 'ES384' | 'EdDSA'
export const ALGS: Alg[] = ['RS256', 'RS384', 'PS256', 'ES256', 'ES384', 'EdDSA']

/** A fresh key pair for `alg`: private PKCS#8 PEM, private KeyObject and public JWK. */
export async function keyFor(alg: Alg, kid = `kid-${alg}`): Promise<{ pem: string; key: KeyObject; jwk: JWK; kid: string }> {
  const pair = alg.startsWith('RS') || alg === 'PS256' ? generateKeyPairSync('rsa', { modulusLength: 2048 })
    : alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : alg === 'ES384' ? generateKeyPairSync('ec', { namedCurve: 'P-384' })
    : generateKeyPairSync('ed25519')
  const pem = pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  const jwk = { ...(await exportJWK(createPublicKey(pair.privateKey))), alg, kid, use: 'sig' }
  return { pem, key: pair.privateKey, jwk, kid }
}

const FIX = join(import.meta.dirname, 'fixtures')
export const fixtures = {
  ca: readFileSync(join(FIX, 'ca.pem'), 'utf8'),
  serverCert: readFileSync(join(FIX, 'server.pem'), 'utf8'),
  serverKey: readFileSync(join(FIX, 'server.key'), 'utf8'),
  clientCert: readFileSync(join(FIX, 'client.pem'), 'utf8'),
  clientKey: readFileSync(join(FIX, 'client.key'), 'utf8'),
}

/**
 * Collects every log line and every error text produced in a test file, and checks that none of
 * the given secret values (nor any JWT) appears in them.
 */
export function leakCollector() {
  const lines: string[] = []
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk))
      cb()
    },
  })
  const log: Logger = createLogger({ destination: stream, level: 'debug', pretty: false })
  const texts: string[] = []
  function error(e: unknown): unknown {
    let cur: unknown = e
    for (let depth = 0; cur && depth < 5; depth++) {
      texts.push(String((cur as Error).message), inspect(cur, { depth: 5 }), JSON.stringify(cur) ?? '')
      cur = (cur as { cause?: unknown }).cause
    }
    return e
  }
  function leaks(secrets: Iterable<string>): string[] {
    const all = [...lines, ...texts]
    const found: string[] = []
    for (const s of secrets) {
      if (s.length < 8) continue
      if (all.some((t) => t.includes(s))) found.push(`${s.slice(0, 4)}… (${s.length} chars)`)
    }
    for (const t of all) if (/eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\./.test(t)) found.push(`a JWT in: ${t.slice(0, 80)}`)
    for (const t of all) if (/PRIVATE KEY-----/.test(t) || /MII[A-Za-z0-9+/]{40}/.test(t)) found.push(`key material in: ${t.slice(0, 80)}`)
    return found
  }
  return { log, lines, texts, error, leaks }
}

/** Lines of a PEM private key long enough to identify it. */
export function pemBody(pem: string): string[] {
  return pem.split('\n').filter((l) => l.length > 40 && !l.startsWith('-----'))
}
