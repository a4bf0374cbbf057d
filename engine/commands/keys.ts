import { mkdir, open, readFile, rename, stat, writeFile } from 'node:fs/promises'
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path'
import { dataDirOf, parseSubcommandFlags, type CommandIO, type FlagOptions } from '../cli-io.ts'
import { rotateStoreKey } from '../store-key-rotation.ts'
import { errorCodes } from '../../shared/errors.ts'
import { escapePointer } from '../../shared/config/problems.ts'
import { displayPath, parseJsonWithLocation } from '../../shared/config/load.ts'
import { KEY_ALGS, PRUNE_MARGIN_SEC, currentKeyFile, generateKeys, parseDelay, pruneKeys, publicKeySet, replaceJsonValue, rotateKey, signingBlockOf, type KeyAlg, type RawSigningBlock } from '../key-rotation.ts'

export { generateKeys } from '../key-rotation.ts'

export const summary = 'generate, rotate and prune signing keys (private PEM mode 0600, public JWKS to register with a provider)'
export const usage = `usage: weir keys generate --alg ALG [--kid KID] [--out DIR]
       weir keys rotate <channel.json> <credential> [--alg ALG] [--kid KID] [--out DIR] [--delay 24h] [--assertion]
       weir keys prune <channel.json> <credential> [--assertion]
       weir keys rotate-store-key [--data-dir D]

generate: a key pair for private_key_jwt or jwt-bearer assertions. Writes
  <out>/<kid>.private.pem   PKCS#8 private key, file mode 0600 (reference it as { "$file": "..." })
  <out>/<kid>.jwks.json     public JWKS to register with the provider (e.g. Epic, Azure)
and prints the JWKS, then the block to put in the credential, labelled: its clientAuth
(private_key_jwt), or the assertion of the jwt_bearer grant. A "$file" path resolves against the
channel file's directory: the key's path is given from the working directory (absolute when the key
lies outside it). Never overwrites an existing file.

rotate: writes a new key (mode 0600) and adds it to the credential's key list (clientAuth.keys,
or assertion.keys with --assertion) with signFrom = now + the delay, so that a provider reading
the JWK Set (weir run --jwks) sees the new key before it signs. A single key (privateKey + kid)
becomes the list's first entry. Edits the file that defines the credential (the channel file or
its credentialsFile). Prints the JWKS to register in place of the one registered now: every key of
the list (the current key and the new one), public members only. When a key of the list cannot be
read here (an $env not set in this shell), it prints the new key alone: add this key beside the
registered ones.

prune: drops the keys retired for longer than the assertion lifetime (plus 60 s): a key is
retired once a later key's signFrom has passed. Never drops the key signing now.

rotate-store-key: a new store key (message content with encryptContent, refresh tokens) in
<data-dir>/oauth/secret.key; the old key moves to <data-dir>/oauth/retired.keys and still reads
what it sealed. Then every message value sealed with an older key is sealed again with the new one,
in small batches while the engine runs (it picks up the new key within seconds, no restart).
One rotation at a time: it holds <data-dir>/oauth/rotate.lock, and a second one started meanwhile
is refused (exit 1) before changing anything. At the end the WAL is checkpointed into weir.db and
truncated, so no copy of a value as the old key sealed it is left; the checkpoint does not wait
behind a reader (a weir messages or weir backup reading at that moment) and, when one keeps it
from truncating the WAL, the command says so on stderr and exits 3 (the rotation itself is done):
run it again once no reader is left, or stop the engine. A data directory without a key file has
nothing to rotate (exit 1): the command says why (its content stored in clear, a key made from a
passphrase, or a key missing while values sealed with it are left).

  --alg     RS256 | RS384 | PS256 | ES256 | ES384 | EdDSA (Epic: RS384 or ES384); rotate: default the current key's
  --kid     key id (default: the JWK thumbprint)
  --out     directory (generate: the working directory; rotate: the current key file's, else keys/ next to the file)
  --delay   rotate: publication delay before the new key signs (default 24h; e.g. 90m, 2d, 0)

exit status: 0 on success, 1 when it cannot be done (rotate-store-key: also when another one
runs), 2 on bad usage (an unknown subcommand, a missing or invalid flag); rotate-store-key: 3 when a reader kept the WAL from being truncated`

export interface KeysDeps {
  /** Clock (epoch ms); tests inject one. */
  now?: () => number
  /** rotate-store-key: how long re-encryption keeps looking for values sealed with the old key (tests shorten it). */
  settleMs?: number
}

const ALGS = KEY_ALGS
type Alg = KeyAlg

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

type Options = { alg?: string; kid?: string; out?: string; delay?: string; assertion?: boolean }

function checkedAlg(alg: string | undefined): Alg | undefined {
  if (alg !== undefined && !ALGS.includes(alg as Alg)) throw new errorCodes.ERR_USAGE(`--alg must be one of ${ALGS.join(', ')}; got ${alg}`)
  return alg as Alg | undefined
}

function checkedKid(kid: string | undefined): string | undefined {
  if (kid !== undefined && !/^[A-Za-z0-9._-]{1,128}$/.test(kid)) throw new errorCodes.ERR_USAGE('--kid may contain letters, digits, ".", "_" and "-" only')
  return kid
}

async function generate(values: Options, io: CommandIO): Promise<number> {
  const alg = checkedAlg(values.alg)
  if (!alg) throw new errorCodes.ERR_USAGE(`--alg must be one of ${ALGS.join(', ')}`)
  const out = resolve(io.cwd, values.out ?? '.')
  try {
    await mkdir(out, { recursive: true })
  } catch (e) {
    throw new errorCodes.ERR_FILE_ACCESS(`--out ${displayPath(out)}: cannot create the directory: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
  }
  const { kid, privatePem, jwks } = await generateKeys(alg, checkedKid(values.kid))
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
    ...credentialSnippets(keyFile, io.cwd, alg, kid),
  ].join('\n'))
  return 0
}

/** `path` relative to `base`, with "/" between its parts as a channel file writes it on every system. */
const relativeRef = (base: string, path: string) => relative(base, path).split(sep).join('/')

/**
 * What to put in the credential that signs with a new key, labelled, for the grant at hand (either
 * unknown to `weir keys generate`, so both): the client authentication (private_key_jwt, for any grant
 * that authenticates the client) and the assertion of the jwt_bearer grant. A `$file` path resolves
 * against the channel file's directory, and `base` is where the channel file is taken to be (the
 * working directory): the key's path from there, or its absolute path when it lies outside it.
 */
function credentialSnippets(keyFile: string, base: string, alg: Alg, kid: string): string[] {
  const ref = relativeRef(base, keyFile)
  const outside = ref.startsWith('../') || ref === '..' || isAbsolute(ref)
  const signing = { alg, kid, privateKey: { $file: outside ? keyFile : ref } }
  return [
    outside
      ? 'in the credential, in the channel file:'
      : 'in the credential, for a channel file in the current directory ("$file" paths resolve against the channel file\'s directory: from another one, give the key\'s path from there):',
    '',
    'as its client authentication (private_key_jwt), e.g. with the client_credentials grant:',
    JSON.stringify({ clientAuth: { method: 'private_key_jwt', ...signing } }, null, 2),
    '',
    'or as the assertion of the jwt_bearer grant:',
    JSON.stringify({ grant: 'jwt_bearer', assertion: signing }, null, 2),
  ]
}

/**
 * The file that defines a credential (the channel file, else its credentialsFile): its text, parsed,
 * the credential in it and the keys leading to it (`path`), for an edit of that place only.
 */
interface CredentialSource { file: string; text: string; data: Record<string, any>; credential: Record<string, unknown>; path: string[]; where: string }

async function readJson(file: string): Promise<{ text: string; data: Record<string, any> }> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (e) {
    throw new errorCodes.ERR_FILE_ACCESS(`cannot read ${displayPath(file)}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
  }
  const data = parseJsonWithLocation(text, displayPath(file))
  if (!data || typeof data !== 'object' || Array.isArray(data)) throw new errorCodes.ERR_FILE_ACCESS(`${displayPath(file)} is not a JSON object`)
  return { text, data: data as Record<string, any> }
}

async function locateCredential(channelFile: string, name: string): Promise<CredentialSource> {
  const { text, data: channel } = await readJson(channelFile)
  const own = channel.credentials
  if (own && typeof own === 'object' && Object.hasOwn(own, name)) {
    return { file: channelFile, text, data: channel, credential: own[name], path: ['credentials', name], where: `${displayPath(channelFile)}#/credentials/${escapePointer(name)}` }
  }
  if (typeof channel.credentialsFile === 'string') {
    const file = resolve(dirname(channelFile), channel.credentialsFile)
    const shared = await readJson(file)
    if (Object.hasOwn(shared.data, name)) return { file, ...shared, credential: shared.data[name], path: [name], where: `${displayPath(file)}#/${escapePointer(name)}` }
  }
  throw new errorCodes.ERR_USAGE(`credential "${name}" is not defined in ${displayPath(channelFile)}${typeof channel.credentialsFile === 'string' ? ' or its credentialsFile' : ''}`)
}

/**
 * Writes the edited signing block back into the credential's file, changing only the block's own
 * text (every other byte stays as it was; see replaceJsonValue), atomically, keeping the file's mode.
 */
async function writeBlock(src: CredentialSource, blockName: string): Promise<void> {
  const file = src.file
  const text = replaceJsonValue(src.text, [...src.path, blockName], src.credential[blockName]) ?? JSON.stringify(src.data, null, 2) + '\n'
  const tmp = `${file}.weir-tmp`
  try {
    const { mode } = await stat(file)
    await writeFile(tmp, text, { mode: mode & 0o777 })
    await rename(tmp, file)
  } catch (e) {
    throw new errorCodes.ERR_FILE_ACCESS(`cannot write ${displayPath(file)}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
  }
}

async function rotate(src: CredentialSource, values: Options, io: CommandIO, now: number): Promise<number> {
  const signFrom = new Date(now + parseDelay(values.delay ?? '24h', '--delay')).toISOString()
  const base = dirname(src.file)
  const alg = checkedAlg(values.alg)
  const kid = checkedKid(values.kid)
  const r = await rotateKey(src.credential, src.where, {
    signFrom, ...(values.assertion ? { which: 'assertion' as const } : {}), ...(alg ? { alg } : {}), ...(kid ? { kid } : {}),
    keyFile(id, b) {
      const current = currentKeyFile(b)
      const dir = values.out !== undefined ? resolve(io.cwd, values.out) : current ? dirname(resolve(base, current)) : join(base, 'keys')
      const path = join(dir, `${id}.private.pem`)
      return { path, ref: relativeRef(base, path) }
    },
  })
  await mkdir(dirname(r.keyFile), { recursive: true })
  await writeNew(r.keyFile, r.privatePem, 0o600)
  await writeBlock(src, r.block.name)
  io.out([
    `new key ${r.kid} (${r.alg}) signs from ${signFrom}`,
    `private key: ${r.keyFile} (mode 0600; keep it secret)`,
    `updated ${src.where}/${r.block.name}/keys`,
    '',
    ...await toRegister(src, r, io),
  ].join('\n'))
  return 0
}

/**
 * What to give the provider: the whole JWK Set (every key of the list, the one signing until the new
 * key's signFrom included), for a provider that replaces its registered set with the one given; or,
 * when a key of the list cannot be read here, the new key alone, to add beside the keys registered now.
 */
async function toRegister(src: CredentialSource, r: { block: RawSigningBlock; jwks: { keys: unknown[] } }, io: CommandIO): Promise<string[]> {
  const serve = 'The provider must see the new public key before then: serve the JWK Set (weir run --jwks) at the registered jwks_uri, or'
  const set = await publicKeySet(r.block, src.where, dirname(src.file), io.env)
  if ('problem' in set) {
    return [`${serve} add this key to the JWKS registered with the provider, keeping the keys registered now: the current key signs until then (the whole set cannot be printed here: ${set.problem}):`, JSON.stringify(r.jwks, null, 2)]
  }
  const n = set.jwks.keys.length
  const holds = n === 2 ? 'it holds the current key and the new one' : `it holds the ${n} keys of the list: the current key, the new one and ${n - 2} other${n === 3 ? '' : 's'}`
  return [`${serve} register this JWKS (${holds}):`, JSON.stringify(set.jwks, null, 2)]
}

async function prune(src: CredentialSource, values: Options, io: CommandIO, now: number): Promise<number> {
  const b = signingBlockOf(src.credential, src.where, values.assertion ? 'assertion' : undefined)
  const dropped = pruneKeys(b, now)
  if (!dropped.length) {
    io.out(`nothing to prune in ${src.where}/${b.name}: no key has been retired for longer than its assertions live (${b.lifetimeSec} s + ${PRUNE_MARGIN_SEC} s)`)
    return 0
  }
  await writeBlock(src, b.name)
  io.out(`dropped ${dropped.join(', ')} from ${src.where}/${b.name}/keys; delete their private key files once nothing else uses them`)
  return 0
}

/** The flags each subcommand takes: any other (`--store`, a typo) is bad usage naming the subcommand's own. */
const SUBCOMMAND_FLAGS = {
  generate: { alg: { type: 'string' }, kid: { type: 'string' }, out: { type: 'string' } },
  rotate: { alg: { type: 'string' }, kid: { type: 'string' }, out: { type: 'string' }, delay: { type: 'string' }, assertion: { type: 'boolean' } },
  prune: { assertion: { type: 'boolean' } },
  'rotate-store-key': { 'data-dir': { type: 'string' } },
} as const satisfies Record<string, FlagOptions>

export async function run(args: string[], io: CommandIO, deps: KeysDeps = {}): Promise<number> {
  const { sub, values, positionals: [, ...rest] } = parseSubcommandFlags(args, SUBCOMMAND_FLAGS, 'keys')
  const now = (deps.now ?? Date.now)()
  if (sub === 'generate' && rest.length === 0) return generate(values, io)
  if (sub === 'rotate-store-key' && rest.length === 0) return rotateStoreKey(dataDirOf(values['data-dir'], io), io, deps.settleMs !== undefined ? { settleMs: deps.settleMs } : {})
  if ((sub === 'rotate' || sub === 'prune') && rest.length === 2) {
    const src = await locateCredential(resolve(io.cwd, rest[0]!), rest[1]!)
    return sub === 'rotate' ? rotate(src, values, io, now) : prune(src, values, io, now)
  }
  io.err(usage)
  return 2
}
