import { KeyObject } from 'node:crypto'
import { exportPKCS8, generateKeyPair, type JWK } from 'jose'
import { errorCodes } from '../shared/errors.ts'
import { resolveSecrets, type SecretContext } from '../shared/config/load.ts'
import { applyPreset, type CredentialConfig, type KeyEntry, type SigningConfig } from '../shared/oauth/config.ts'
import { loadSigningKeys, publicJwk, publicJwkSet } from '../shared/oauth/keys.ts'

export const KEY_ALGS = ['RS256', 'RS384', 'PS256', 'ES256', 'ES384', 'EdDSA'] as const
export type KeyAlg = (typeof KEY_ALGS)[number]

/** A provider may accept an assertion a little after its `exp` (clock tolerance): a retired key stays this much longer. */
export const PRUNE_MARGIN_SEC = 60

/**
 * Generates a key pair (jose): RSA 3072, EC P-256 / P-384 or Ed25519 for `alg`; returns the private
 * PKCS#8 PEM and the public JWK Set (kid: `kid`, else the RFC 7638 thumbprint).
 */
export async function generateKeys(alg: KeyAlg, kid?: string): Promise<{ kid: string; privatePem: string; jwks: { keys: JWK[] } }> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true, ...(/^(RS|PS)/.test(alg) ? { modulusLength: 3072 } : {}) })
  const jwk = await publicJwk(KeyObject.from(privateKey), alg, kid)
  return { kid: jwk.kid!, privatePem: await exportPKCS8(privateKey), jwks: { keys: [jwk] } }
}

/** A signing block of a credential as written in its file (`clientAuth` or `assertion`), before loading. */
export interface RawSigningBlock {
  name: 'clientAuth' | 'assertion'
  block: Record<string, unknown>
  /** Assertion lifetime (s) with the preset's defaults: how long an assertion signed by a retired key lives. */
  lifetimeSec: number
}

const holdsKey = (b: unknown): b is Record<string, unknown> => !!b && typeof b === 'object' && ('privateKey' in b || 'keys' in b || 'keyFile' in b)

/**
 * The block holding the credential's private key: `which`, else clientAuth, else assertion. What
 * the file lacks (a key, a kid) is a problem in the file (ERR_CONFIG_INVALID, exit 1), not bad usage.
 */
export function signingBlockOf(credential: Record<string, unknown>, where: string, which?: 'clientAuth' | 'assertion'): RawSigningBlock {
  const name = which ?? (holdsKey(credential.clientAuth) ? 'clientAuth' : 'assertion')
  const block = credential[name]
  if (!holdsKey(block)) throw new errorCodes.ERR_CONFIG_INVALID(`${where}: no private key in ${which ? name : 'clientAuth or assertion'} to rotate`)
  if ('keyFile' in block) throw new errorCodes.ERR_CONFIG_INVALID(`${where}/${name}/keyFile: a service-account key file is rotated at its provider; weir keys rotates privateKey and keys`)
  const c = applyPreset(credential as CredentialConfig)
  const lifetimeSec = (name === 'clientAuth' ? c.clientAuth?.assertionLifetimeSec : c.assertion?.lifetimeSec) ?? 300
  return { name, block, lifetimeSec }
}

/**
 * Adds `entry` to the block's key list, first turning a single key (privateKey and kid) into the
 * list's first entry, which signs until `entry.signFrom`.
 */
export function addKey(b: RawSigningBlock, entry: KeyEntry, where: string): void {
  const at = `${where}/${b.name}`
  if (!b.block.keys) {
    if (b.block.certificate !== undefined) throw new errorCodes.ERR_CONFIG_INVALID(`${at}/certificate: a key with a certificate (x5t headers) cannot rotate by kid; replace the key and certificate together`)
    if (typeof b.block.kid !== 'string') throw new errorCodes.ERR_CONFIG_INVALID(`${at}/kid: the current key has no kid; give it the kid it is registered under first`)
    b.block.keys = [{ kid: b.block.kid, privateKey: b.block.privateKey }]
    delete b.block.kid
    delete b.block.privateKey
  }
  const keys = b.block.keys as KeyEntry[]
  if (keys.some((k) => k.kid === entry.kid)) throw new errorCodes.ERR_USAGE(`${at}/keys: kid "${entry.kid}" is already in the list`)
  keys.push(entry)
}

/** The `$file` of the block's newest key, if its key lives in a file. */
export function currentKeyFile(b: RawSigningBlock): string | undefined {
  const keys = b.block.keys as KeyEntry[] | undefined
  const ref = (keys ? keys[keys.length - 1]?.privateKey : b.block.privateKey) as { $file?: unknown } | undefined
  return typeof ref?.$file === 'string' ? ref.$file : undefined
}

export interface RotationOptions {
  /** The block to rotate; default the one holding the key (clientAuth first). */
  which?: 'clientAuth' | 'assertion'
  /** Default: the newest key's, else the block's, else the preset's. */
  alg?: KeyAlg
  /** Default: the JWK thumbprint. */
  kid?: string
  /** When the new key starts to sign (RFC 3339). */
  signFrom: string
  /** Where the new private key goes: its path, and the `$file` reference the credential gets. */
  keyFile(kid: string, b: RawSigningBlock): { path: string; ref: string }
}

/**
 * Generates a key and adds it to the credential (a raw, unloaded credential object, changed in
 * place) with `signFrom`; the caller writes the private key (0600) and the credential's file.
 */
export async function rotateKey(credential: Record<string, unknown>, where: string, o: RotationOptions): Promise<{ block: RawSigningBlock; kid: string; alg: KeyAlg; keyFile: string; privatePem: string; jwks: { keys: JWK[] } }> {
  const b = signingBlockOf(credential, where, o.which)
  const keys = b.block.keys as KeyEntry[] | undefined
  const alg = (o.alg ?? keys?.[keys.length - 1]?.alg ?? b.block.alg ?? applyPreset(credential as CredentialConfig)[b.name]?.alg) as KeyAlg | undefined
  if (!alg || !KEY_ALGS.includes(alg)) throw new errorCodes.ERR_USAGE(`${where}/${b.name}/alg: the credential names no asymmetric algorithm; give one (${KEY_ALGS.join(', ')})`)
  const { kid, privatePem, jwks } = await generateKeys(alg, o.kid)
  const file = o.keyFile(kid, b)
  addKey(b, { kid, privateKey: { $file: file.ref } as never, ...(alg !== b.block.alg ? { alg } : {}), signFrom: o.signFrom }, where)
  return { block: b, kid, alg, keyFile: file.path, privatePem, jwks }
}

/**
 * The public JWK Set of every key of the block's list (after a rotation: the keys registered now and
 * the new one), in the order and form `weir run --jwks` serves it: public members only. `privateKey`
 * references resolve as the engine resolves them (`$file` against `dir`, `$env` in `env`). A key that
 * cannot be read here gives `problem` instead, naming its pointer and why (never its value).
 */
export async function publicKeySet(b: RawSigningBlock, where: string, dir: string, env: NodeJS.ProcessEnv): Promise<{ jwks: { keys: JWK[] } } | { problem: string }> {
  const block = structuredClone(b.block) as SigningConfig & Record<string, unknown>
  const at = `${where}/${b.name}`
  const sc: SecretContext = { file: at, dir, env, problems: [], warnings: [] }
  resolveSecrets(block, (block.keys ?? []).map((_, i) => `/keys/${i}/privateKey`), '', sc)
  const unresolved = sc.problems[0]
  if (unresolved) return { problem: `${at}${unresolved.pointer}: ${unresolved.message}` }
  try {
    return { jwks: await publicJwkSet(loadSigningKeys(block, at)) }
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_CONFIG_INVALID') return { problem: (e as Error).message }
    throw e
  }
}

/**
 * Drops the keys retired long enough ago: a key is retired once a later key's `signFrom` has
 * passed, and dropped when its last assertion has expired (retirement + assertion lifetime +
 * PRUNE_MARGIN_SEC). The key signing now and keys still to come are never dropped. Returns the kids dropped.
 */
export function pruneKeys(b: RawSigningBlock, nowMs: number): string[] {
  const keys = b.block.keys
  if (!Array.isArray(keys)) return []
  const from = (k: KeyEntry) => (k.signFrom === undefined ? -Infinity : Date.parse(k.signFrom))
  const order = (keys as KeyEntry[]).map((k, i) => ({ k, i })).sort((x, y) => from(x.k) - from(y.k) || x.i - y.i)
  const keepMs = (b.lifetimeSec + PRUNE_MARGIN_SEC) * 1000
  const dropped = new Set<KeyEntry>()
  order.forEach(({ k }, n) => {
    const retiredAt = order.slice(n + 1).map((o) => from(o.k)).find((t) => t <= nowMs)
    if (retiredAt !== undefined && retiredAt + keepMs <= nowMs) dropped.add(k)
  })
  b.block.keys = (keys as KeyEntry[]).filter((k) => !dropped.has(k))
  return [...dropped].map((k) => k.kid)
}

/** Parses a delay such as `24h`, `90m`, `30s`, `2d` or `0` into ms. */
export function parseDelay(value: string, flag: string): number {
  const m = /^(\d+)(s|m|h|d)?$/.exec(value.trim())
  if (!m) throw new errorCodes.ERR_USAGE(`${flag} must be a duration such as 24h, 90m, 30s or 2d; got "${value}"`)
  const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? 's') as 's' | 'm' | 'h' | 'd']
  return Number(m[1]) * unit
}

/** Index of the first non-whitespace character at or after `i`. */
function skipWs(t: string, i: number): number {
  while (i < t.length && /\s/.test(t[i]!)) i++
  return i
}

/** Index just after the JSON value that starts at `i` (in valid JSON text). */
function valueEnd(t: string, i: number): number {
  if (t[i] === '"') {
    for (i++; t[i] !== '"'; i += t[i] === '\\' ? 2 : 1);
    return i + 1
  }
  if (t[i] !== '{' && t[i] !== '[') {
    while (i < t.length && !/[\s,\]}]/.test(t[i]!)) i++
    return i
  }
  let depth = 0
  for (; i < t.length; i++) {
    const c = t[i]
    if (c === '"') i = valueEnd(t, i) - 1
    else if (c === '{' || c === '[') depth++
    else if ((c === '}' || c === ']') && --depth === 0) return i + 1
  }
  return i
}

/** `[start, end)` of the value at `path` (object keys; of a key given twice, the last, as JSON.parse takes it), or undefined. */
function valueSpan(t: string, path: readonly string[]): [number, number] | undefined {
  let start = skipWs(t, 0)
  for (const key of path) {
    if (t[start] !== '{') return undefined
    let found: number | undefined
    for (let i = skipWs(t, start + 1); t[i] === '"';) {
      const keyEnd = valueEnd(t, i)
      const v = skipWs(t, skipWs(t, keyEnd) + 1)
      if (JSON.parse(t.slice(i, keyEnd)) === key) found = v
      i = skipWs(t, valueEnd(t, v))
      if (t[i] === ',') i = skipWs(t, i + 1)
    }
    if (found === undefined) return undefined
    start = found
  }
  return [start, valueEnd(t, start)]
}

/** `v` as JSON on one line: `{"a":1}`, or spaced as `{"a": 1, "b": [1, 2]}`. */
function oneLine(v: unknown, spaced: boolean): string {
  if (!spaced || v === null || typeof v !== 'object') return JSON.stringify(v)
  if (Array.isArray(v)) return `[${v.map((x) => oneLine(x, true)).join(', ')}]`
  return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${oneLine(x, true)}`).join(', ')}}`
}

/**
 * `text` (a JSON document) with the value at `path` replaced by `value`, every other byte kept: the
 * new value is written in the style of the old one (one line, spaced as it was; or indented with
 * the file's own indentation from the column of the line it starts on). Undefined when `path` is
 * not in the text.
 */
export function replaceJsonValue(text: string, path: readonly string[], value: unknown): string | undefined {
  const span = valueSpan(text, path)
  if (!span) return undefined
  const old = text.slice(span[0], span[1])
  const lineStart = text.lastIndexOf('\n', span[0]) + 1
  const lineIndent = /^[ \t]*/.exec(text.slice(lineStart))![0]
  const unit = /\n([ \t]+)\S/.exec(text)?.[1] ?? '  '
  // An object written `{"a": 1}` (a space after its first key's colon) is spaced.
  const spaced = /^\{\s*"(?:[^"\\]|\\.)*": /.test(old)
  const written = old.includes('\n') ? JSON.stringify(value, null, unit).split('\n').join(`\n${lineIndent}`) : oneLine(value, spaced)
  return text.slice(0, span[0]) + written + text.slice(span[1])
}
