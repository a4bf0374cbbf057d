import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { displayPath } from '../shared/config/load.ts'
import { isModuleReference } from '../shared/config/registry.ts'
import { errorCodes } from '../shared/errors.ts'
import type { LoadedChannel, LoadedComponent } from '../shared/config/types.ts'
import { Secret } from '../shared/secret.ts'
import type { DefinitionOutline } from '../shared/store/postgres/engines.ts'
import type { LoadedAlerts } from './alerts/index.ts'

/** What stands for a literal secret in the canonical form: its value is never hashed. */
const LITERAL_SECRET = { $literal: 'secret' }

/**
 * Files a built-in component loads by a path in its config and that decide what happens to a
 * message: a script filter's module, a validate filter's schema file.
 */
const LOADED_BY_CONFIG: Readonly<Record<string, string>> = { script: 'module', validate: 'schemaFile' }

/** JSON with the keys of every object sorted, no white space: equal for equal values however the file was written. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (value && typeof value === 'object') {
    const o = value as Record<string, unknown>
    return `{${Object.keys(o).sort().filter((k) => o[k] !== undefined).map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`
  }
  return JSON.stringify(value) ?? 'null'
}

/**
 * Channel options that tune one engine and not what a message goes through: how many messages it
 * processes at once, when its source refuses input, how long its stop waits. Left out of the
 * fingerprint, so engines may differ in them (and a change of them may roll from engine to engine).
 */
export const ENGINE_LOCAL_OPTIONS: readonly string[] = ['concurrency', 'queueLimit', 'maxStoreBytes', 'shutdownTimeoutMs']

const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex')

/** What a channel's fingerprint covers, as hashed (see definitionFingerprint), and the credentials file's name as written. */
interface Covered {
  document: { channel: Record<string, unknown>; files: Record<string, string>; credentialsFile?: unknown }
  credentialsFile?: string
}

/**
 * The fingerprint of a channel's definition, the same on every engine that runs the same
 * definition: sha256 over the channel file as written (parsed, keys sorted; secret references as
 * written, literal secrets replaced by a marker, resolved values never) and the content of each
 * file its filters and destinations load by path (a component module, a script filter's module, a
 * validate filter's schema file), named as written, and its shared credentials file (literal
 * secrets replaced as in the channel file). Only those files: what a module imports in
 * turn is not read. The source is left out: it only stores messages, and its settings (a listener's
 * port) may differ from engine to engine; what a claimed message goes through must not. So are the
 * options that tune one engine (ENGINE_LOCAL_OPTIONS).
 *
 * @example
 * await definitionFingerprint(await loadChannel('channels/adt.json')) // 'sha256:3f1c…'
 */
export async function definitionFingerprint(channel: LoadedChannel): Promise<string> {
  return fingerprintOf((await covered(channel)).document)
}

/** A channel's fingerprint (see definitionFingerprint) and the outline of what it covers (see channelDefinition). */
export interface ChannelDefinition {
  fingerprint: string
  outline: DefinitionOutline
}

/**
 * A channel's fingerprint and, from the same reading of its files, its outline, which tells where
 * two definitions differ (a fingerprint cannot): each leaf of what the fingerprint covers mapped to
 * the first 12 hex digits of the sha256 of its canonical JSON, never the value (a literal secret is
 * the marker that stands for it). A leaf of the channel file is named by its JSON pointer
 * (`/destinations/0/config/url`), a file a component loads `files/<path as written>`, a leaf of the
 * credentials file `<path as written>#<JSON pointer>`; an empty object or array is a leaf. What the
 * fingerprint leaves out, the outline does too: it walks the same document.
 *
 * @see https://www.rfc-editor.org/rfc/rfc6901 JSON Pointer
 * @example
 * const { fingerprint, outline } = await channelDefinition(await loadChannel('channels/adt.json'))
 * outline['/destinations/0/config/url'] // '9b1e04c2d7aa'
 */
export async function channelDefinition(channel: LoadedChannel): Promise<ChannelDefinition> {
  const c = await covered(channel)
  const outline: Record<string, string> = {}
  addLeaves(outline, '', c.document.channel)
  for (const [path, digest] of Object.entries(c.document.files)) outline[`files/${path}`] = leafDigest(digest)
  if (c.credentialsFile !== undefined) addLeaves(outline, `${c.credentialsFile}#`, c.document.credentialsFile)
  return { fingerprint: fingerprintOf(c.document), outline }
}

/** The fingerprints and outlines of channels, each by channel name (see channelDefinition). */
export async function channelDefinitions(channels: readonly LoadedChannel[]): Promise<{ fingerprints: Record<string, string>; outlines: Record<string, DefinitionOutline> }> {
  const fingerprints: Record<string, string> = {}
  const outlines: Record<string, DefinitionOutline> = {}
  for (const ch of channels) {
    const { fingerprint, outline } = await channelDefinition(ch)
    fingerprints[ch.name] = fingerprint
    outlines[ch.name] = outline
  }
  return { fingerprints, outlines }
}

/**
 * The definitions of the internal channels that deliver an alerts file's notifications
 * (`weir-alerts.<webhook>`), by channel name, as channelDefinitions gives a channel's: engines of a
 * cluster share these channels as they share any other (a notification one engine queues, another
 * may deliver), so an engine whose alerts file sends a webhook elsewhere or with another credential
 * must be refused like one whose channel file differs. Each covers, as written in the file, the
 * webhook and the credential it names, with literal secrets replaced by the marker; the outline's
 * pointers read like the file's (`/webhooks/pager/url`). Not the rules: they decide what the alerts'
 * leader queues, not how a notification is delivered, and engines running different channels
 * cannot load the same rules (a rule may name only channels the engine runs). A channel's own
 * `alerts` block is part of that channel's definition already.
 */
export async function alertsFileDefinitions(alerts: LoadedAlerts | undefined): Promise<{ fingerprints: Record<string, string>; outlines: Record<string, DefinitionOutline> }> {
  const fingerprints: Record<string, string> = {}
  const outlines: Record<string, DefinitionOutline> = {}
  if (!alerts?.file) return { fingerprints, outlines }
  const written = await readWritten(alerts.file) as { webhooks?: Record<string, Record<string, unknown>>; credentials?: Record<string, unknown> }
  for (const [hook, channel] of Object.entries(alerts.webhooks)) {
    const webhook = written.webhooks?.[hook]
    // The merged alerts' other webhooks are channels' own (keyed `<channel>/<hook>`): their channels cover them.
    if (channel.file !== alerts.file || webhook === undefined) continue
    const credential = typeof webhook.credential === 'string' ? webhook.credential : undefined
    const document = {
      webhooks: { [hook]: webhook },
      credentials: credential === undefined ? {} : { [credential]: written.credentials?.[credential] },
    }
    for (const path of literalSecretPaths(channel)) replaceString(document, webhookPath(path, hook), LITERAL_SECRET)
    fingerprints[channel.name] = fingerprintOf(document)
    const outline: Record<string, string> = {}
    addLeaves(outline, '', document)
    outlines[channel.name] = outline
  }
  return { fingerprints, outlines }
}

/**
 * Where a path of a webhook's internal channel (engine/alerts/load.ts `webhookChannel`) is in its
 * alerts file: the destination's config and its retry and breaker are the webhook's own keys;
 * credentials keep their path.
 */
function webhookPath(path: readonly string[], hook: string): string[] {
  if (path[0] !== 'destinations') return [...path]
  return ['webhooks', hook, ...path.slice(path[2] === 'config' ? 3 : 2)]
}

/** The fingerprint of a definition's covered document (a channel's, or an alerts webhook's). */
const fingerprintOf = (document: unknown) => `sha256:${sha256(canonicalJson(document))}`

const leafDigest = (value: unknown) => sha256(canonicalJson(value)).slice(0, 12)

/** Adds the leaves of `value` to `outline`, each under `pointer` and its keys escaped as RFC 6901 says (`~` as `~0`, `/` as `~1`). */
function addLeaves(outline: Record<string, string>, pointer: string, value: unknown): void {
  const entries = value === LITERAL_SECRET || !value || typeof value !== 'object' ? [] : Object.entries(value).filter(([, v]) => v !== undefined)
  if (entries.length === 0) outline[pointer] = leafDigest(value)
  for (const [k, v] of entries) addLeaves(outline, `${pointer}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`, v)
}

/** A definition's file as written, read again (after loading it) for its fingerprint. */
async function readWritten(file: string): Promise<Record<string, unknown>> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>
  } catch (e) {
    throw new errorCodes.ERR_FILE_ACCESS(`${displayPath(file)}: cannot be read again for the fingerprint of its definition (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { cause: e })
  }
}

/** What the fingerprint of `channel` covers (see definitionFingerprint), read from its files. */
async function covered(channel: LoadedChannel): Promise<Covered> {
  const written = await readWritten(channel.file)
  const literal = literalSecretPaths(channel)
  for (const path of literal) replaceString(written, path, LITERAL_SECRET)
  const { source: _source, ...processing } = written
  const credentialsFile = typeof written.credentialsFile === 'string' ? await writtenCredentialsFile(channel, written.credentialsFile, literal) : undefined
  if (processing.options && typeof processing.options === 'object') {
    processing.options = Object.fromEntries(Object.entries(processing.options).filter(([k]) => !ENGINE_LOCAL_OPTIONS.includes(k)))
  }
  const files: Record<string, string> = {}
  for (const c of [...channel.filters, ...channel.destinations]) {
    const entry = valueAt(written, keysOf(c.pointer)) as { type?: unknown; config?: Record<string, unknown> } | undefined
    const type = entry?.type
    if (typeof type !== 'string') continue
    const paths = isModuleReference(type) ? [type] : []
    const key = LOADED_BY_CONFIG[type]
    if (key !== undefined && typeof entry?.config?.[key] === 'string') paths.push(entry.config[key] as string)
    for (const p of paths) files[p] ??= await readFile(resolve(channel.dir, p)).then(sha256, () => 'unreadable')
  }
  return {
    document: { channel: processing, files, ...(credentialsFile !== undefined ? { credentialsFile } : {}) },
    ...(credentialsFile !== undefined ? { credentialsFile: written.credentialsFile as string } : {}),
  }
}

/**
 * A shared credentials file (`credentialsFile`) as written, parsed, with its literal secrets replaced
 * by the marker as in the channel file: its credentials (a scope, an audience, a token URL) decide
 * what the channel's destinations are allowed to do, so they are part of the definition.
 */
async function writtenCredentialsFile(channel: LoadedChannel, file: string, literal: readonly string[][]): Promise<unknown> {
  let text: string
  try {
    text = await readFile(resolve(channel.dir, file), 'utf8')
  } catch (e) {
    throw new errorCodes.ERR_FILE_ACCESS(`${displayPath(resolve(channel.dir, file))}: cannot be read again for the fingerprint of channel ${channel.name} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { cause: e })
  }
  const written = JSON.parse(text) as unknown
  // A literal secret of the file's credentials shows in the loaded channel under credentials/<name>/…
  for (const path of literal) if (path[0] === 'credentials') replaceString(written, path.slice(1), LITERAL_SECRET)
  return written
}

function components(channel: LoadedChannel): LoadedComponent[] {
  return [channel.source, ...channel.filters, ...channel.destinations]
}

/** Where, in the channel file, secrets are written as literal strings: each a path of keys. */
function literalSecretPaths(channel: LoadedChannel): string[][] {
  const found: string[][] = []
  const walk = (v: unknown, path: string[]) => {
    if (v instanceof Secret) {
      if (v.source === 'literal') found.push(path)
    } else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) walk(x, [...path, k])
    }
  }
  for (const c of components(channel)) walk(c.config, [...keysOf(c.pointer), 'config'])
  walk(channel.credentials, ['credentials'])
  return found
}

/** The keys of a JSON pointer (`/destinations/0` → `['destinations', '0']`). */
function keysOf(pointer: string): string[] {
  return pointer.split('/').slice(1).map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'))
}

function valueAt(root: unknown, path: readonly string[]): unknown {
  let v = root
  for (const k of path) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined
  return v
}

/** Replaces the string at `path`, if there is one (a path into another file finds nothing). */
function replaceString(root: unknown, path: readonly string[], value: unknown): void {
  const parent = valueAt(root, path.slice(0, -1)) as Record<string, unknown> | undefined
  const last = path[path.length - 1]!
  if (parent && typeof parent === 'object' && typeof parent[last] === 'string') parent[last] = value
}
