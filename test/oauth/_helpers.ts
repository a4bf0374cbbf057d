// Helpers for the OAuth and HTTP tests only: no tests here.
import { generateKeyPairSync, type KeyObject } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Writable } from 'node:stream'
import { request } from 'undici'
import { inspect } from 'node:util'
import { join } from 'node:path'
import { exportJWK, type JWK } from 'jose'
import { createPublicKey } from 'node:crypto'
import { afterAll, beforeAll, expect } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../../engine/embedded/authorization-server.ts'
import { createHttpClient, type HttpClient } from '../../shared/http/index.ts'
import { createLogger, type Logger } from '../../shared/log/index.ts'
import type { RefreshTokenStore } from '../../shared/oauth/refresh-store.ts'

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

/**
 * A loopback proxy in front of a token endpoint that holds the requests `hold` selects until
 * `release()`: a token endpoint that delays exactly as long as a test wants, without timers.
 */
export async function holdingProxy(target: string, hold: (form: URLSearchParams) => boolean) {
  const held: Array<() => void> = []
  let heldTotal = 0
  const watchers: Array<{ n: number; resolve: () => void }> = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      void (async () => {
        const body = Buffer.concat(chunks)
        if (hold(new URLSearchParams(body.toString('utf8')))) {
          await new Promise<void>((resolve) => {
            held.push(resolve)
            heldTotal++
            for (const w of watchers.filter((x) => heldTotal >= x.n)) {
              watchers.splice(watchers.indexOf(w), 1)
              w.resolve()
            }
          })
        }
        const headers: Record<string, string> = {}
        for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && !['host', 'connection', 'keep-alive', 'content-length'].includes(k)) headers[k] = v
        try {
          const up = await request(target, { method: 'POST', headers, body })
          const text = await up.body.text()
          const out: Record<string, string> = {}
          for (const [k, v] of Object.entries(up.headers)) if (typeof v === 'string' && !['connection', 'keep-alive', 'transfer-encoding', 'content-length'].includes(k)) out[k] = v
          res.writeHead(up.statusCode, out)
          res.end(text)
        } catch {
          res.writeHead(502)
          res.end()
        }
      })()
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`
  return {
    url,
    /** Resolves once `n` requests in total have been held. */
    held: (n = 1) => new Promise<void>((resolve) => (heldTotal >= n ? resolve() : watchers.push({ n, resolve }))),
    /** Lets every held request through. */
    release() {
      for (const r of held.splice(0)) r()
    },
    async close() {
      for (const r of held.splice(0)) r()
      server.closeAllConnections()
      await new Promise((r) => server.close(r))
    },
  }
}

export type StoreEvent = { op: 'read'; inLease: boolean; version: number } | { op: 'write'; version: number } | { op: 'lease-wanted' | 'lease-acquired' | 'lease-released' }

/** A refresh-token store that reports what it does (never a token), to prove the lease was contended. */
export function instrumentStore(store: RefreshTokenStore, emit: (e: StoreEvent) => void): RefreshTokenStore {
  let inLease = false
  return {
    async read(key) {
      const e = await store.read(key)
      emit({ op: 'read', inLease, version: e?.version ?? 0 })
      return e
    },
    async write(key, value, expectedVersion) {
      const e = await store.write(key, value, expectedVersion)
      emit({ op: 'write', version: e.version })
      return e
    },
    withLease(key, fn) {
      emit({ op: 'lease-wanted' })
      return store.withLease(key, async (lease) => {
        inLease = true
        emit({ op: 'lease-acquired' })
        try {
          return await fn(lease)
        } finally {
          inLease = false
          emit({ op: 'lease-released' })
        }
      })
    },
  }
}

/** One turn of the event loop, I/O included. */
export const immediate = () => new Promise<void>((r) => setImmediate(r))

/** Lets real I/O progress (setImmediate is not faked) until `cond` holds; bounded by loop turns, not time. */
export async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 20_000; i++) {
    if (cond()) return
    await immediate()
  }
  throw new Error(`timed out waiting for ${what}`)
}

/**
 * A loopback proxy that forwards a token request at once and holds the server's answer until
 * release(): the server has rotated the refresh token, the client has not heard yet.
 */
export async function answerHoldingProxy(target: string) {
  const held: Array<() => void> = []
  let answered = 0
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => void (async () => {
      const up = await request(target, { method: 'POST', headers: { 'content-type': String(req.headers['content-type']) }, body: Buffer.concat(chunks) })
      const text = await up.body.text()
      answered++
      await new Promise<void>((r) => held.push(r))
      if (!res.destroyed) {
        res.writeHead(up.statusCode, { 'content-type': 'application/json' })
        res.end(text)
      }
    })())
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`,
    async answered(k: number) {
      while (answered < k) await new Promise((r) => setTimeout(r, 5))
    },
    release: () => held.splice(0).forEach((r) => r()),
    async close() {
      held.splice(0).forEach((r) => r())
      server.closeAllConnections()
      await new Promise((r) => server.close(r))
    },
  }
}

/** What `useLeakCheckedServer` gives a test file. */
export interface LeakCheckedServer {
  leak: ReturnType<typeof leakCollector>
  /** An HTTP client logging to `leak`. */
  http: HttpClient
  /** The embedded authorization server, started before the file's tests. */
  as: AuthorizationServer
}

/**
 * For a test file: an embedded authorization server started before its tests, an HTTP client that
 * logs to a leak collector, and after them all (nested suites' afterAll first) the check that some
 * log line or error message was collected and none shows a secret the server saw or one of
 * `laterSecrets()` (those of servers started and closed inside tests).
 */
export function useLeakCheckedServer(laterSecrets: () => readonly string[] = () => []): LeakCheckedServer {
  const leak = leakCollector()
  const f = { leak, http: createHttpClient({ log: leak.log }) } as LeakCheckedServer
  beforeAll(async () => {
    f.as = await startAuthorizationServer()
  })
  afterAll(async () => {
    await f.http.close()
    await f.as.close()
    expect(leak.texts.length).toBeGreaterThan(0)
    expect(leak.leaks([...f.as.secretsSeen(), ...laterSecrets()])).toEqual([])
  })
  return f
}
