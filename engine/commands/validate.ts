import { readFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { parseFlags, type CommandIO } from '../cli-io.ts'
import { loadChannel } from '../load.ts'
import { formatProblem, isWeirError, ConfigError, type ConfigProblem } from '../../shared/errors.ts'
import { loadTestFile, type TestFile } from '../harness/test-file.ts'
import { unknownClientsOfFile, unknownCredentialNamesOfFile, unknownMllpDestinationsOfFile } from '../harness/run.ts'
import { destinationsOf, unknownMllpDestinationProblems } from '../harness/mllp.ts'
import type { ChannelOptions, LoadedChannel } from '../../shared/config/types.ts'
import { displayPath } from '../../shared/config/load.ts'
import { escapePointer } from '../../shared/config/problems.ts'
import { isJsonContentType } from '../../shared/component.ts'
import { parseTersePath } from '../../shared/hl7v2/index.ts'
import { loadAlerts } from '../alerts/load.ts'

export const summary = 'check channel files and alerts files: JSON, schemas, component configs, secrets (all errors at once)'
export const usage = `usage: weir validate <channel.json...> [--alerts alerts.json]... [--quiet]

Checks each channel file: JSON syntax (line and column), the channel schema, each component's
config against its own schema, secret references ({"$env": ...}, {"$file": ...}), the credential
each component names and provider rules of credential presets. Every problem a run can find is
listed, as file#/json/pointer: message, by file and then in the order of the file.
Literal secrets in the file are warnings, and so are http:// token, issuer, JWKS and API URLs to a
host that is not loopback, and a listener on all interfaces without authentication or TLS
(warnings go to stderr and do not change the exit status). A file named *.test.json is checked as a channel test
file: its schema, the channel it names (with the test's env values), and the credential and mllp
destination names it gives, against that channel.
An alerts file (what weir run --alerts takes) is checked as weir run checks it: given with --alerts,
or recognised by its shape (top-level "webhooks" or "alerts", and no "name" or "source"). Which
channels, destinations and credentials its rules name is checked by weir run, against the channels run.

  --alerts FILE   check FILE as an alerts file (repeatable)
  --quiet         print only problems and warnings

exit status: 0 when every file is valid, 1 when any is not, 2 on bad usage`

const LOOPBACK_HOST = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/i
const URL_KEY = /(^url$|Url$|^issuer$)/
const ALL_INTERFACES = new Set(['0.0.0.0', '::', '[::]'])

/** True for an http:// URL whose host is not loopback: what goes there (tokens, secrets, messages) travels in clear text. */
function cleartextRemote(value: string): boolean {
  if (!/^http:\/\//i.test(value)) return false
  try {
    return !LOOPBACK_HOST.test(new URL(value).hostname)
  } catch {
    return false
  }
}

/** `[pointer, value]` of every string under a URL-named key (`url`, `tokenUrl`, `jwksUrl`, `issuer`…) in a config tree. */
function urlFields(value: unknown, pointer: string, out: Array<[string, string]> = []): Array<[string, string]> {
  if (Array.isArray(value)) value.forEach((v, i) => urlFields(v, `${pointer}/${i}`, out))
  else if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    for (const [k, v] of Object.entries(value)) {
      const at = `${pointer}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`
      if (typeof v === 'string' && URL_KEY.test(k)) out.push([at, v])
      else urlFields(v, at, out)
    }
  }
  return out
}

/** A component as the warnings read it: its type, config and place in the channel file. */
interface PartView {
  definition: { type: string }
  config: Readonly<Record<string, unknown>>
  pointer: string
}

/**
 * What the warnings read of a channel: the loaded channel, or, for a channel with problems, its JSON
 * without the parts that have problems (`viewOfBroken`), so that a file with errors is warned about too.
 */
interface ChannelView {
  file: string
  credentials: unknown
  source?: PartView
  filters: readonly PartView[]
  destinations: readonly PartView[]
  options: Readonly<Partial<ChannelOptions>>
}

/** Warnings about transport security a schema cannot see: clear-text URLs to other hosts, an open listener. */
export function transportWarnings(ch: ChannelView): string[] {
  const fields = urlFields(ch.credentials, '/credentials')
  for (const c of [...(ch.source ? [ch.source] : []), ...ch.filters, ...ch.destinations]) urlFields(c.config, `${c.pointer}/config`, fields)
  const file = displayPath(ch.file) // as the loader's own warnings name it
  const out = fields.filter(([, v]) => cleartextRemote(v)).map(([at]) => `${file}#${at}: http:// to a host that is not loopback: tokens, secrets and messages travel unencrypted; use https`)
  if (!ch.source) return out
  const source = ch.source.config
  if (typeof source.host === 'string' && ALL_INTERFACES.has(source.host)) {
    const missing = [...(source.jwt || source.apiKey ? [] : ['authentication (jwt or apiKey)']), ...(source.tls ? [] : ['TLS'])]
    if (missing.length) out.push(`${file}#${ch.source.pointer}/config/host: listens on all interfaces without ${missing.join(' or ')}: anyone who can reach the port can ${source.jwt || source.apiKey ? 'read what is sent' : 'send messages'}`)
  }
  return out
}

/**
 * What a filter makes of the body, as far as its config tells: JSON, ER7 text, unknown (a script, a
 * custom filter), or undefined when it keeps the body as it is (match, validate).
 */
function bodyAfter(f: PartView): 'json' | 'er7' | 'unknown' | undefined {
  switch (f.definition.type) {
    case 'match': case 'validate': return undefined
    case 'hl7v2': return f.config.to === 'er7' ? 'er7' : 'json'
    case 'map': return f.config.contentType === undefined || isJsonContentType(String(f.config.contentType)) ? 'json' : 'unknown'
    default: return 'unknown'
  }
}

/**
 * Warnings about what a schema cannot see in what a channel's messages hold: an `mllp` destination
 * fed JSON, and an `orderBy` or search key written as an HL7 field with a dash on ER7 messages.
 */
export function contentWarnings(ch: ChannelView): string[] {
  return [...mllpFedJsonWarnings(ch), ...dashedKeyWarnings(ch)]
}

/**
 * An `mllp` destination sends ER7 text: a channel whose last transforming filter leaves JSON (a `map`
 * to FHIR, `hl7v2` to json) sends every message to error, and one with no transforming filter after
 * an http-listener that accepts JSON each JSON message, though each component's config is valid.
 */
function mllpFedJsonWarnings(ch: ChannelView): string[] {
  const mllps = ch.destinations.filter((d) => d.definition.type === 'mllp')
  if (mllps.length === 0) return []
  let made: { body: 'json' | 'er7' | 'unknown'; at: string; type: string } | undefined
  for (const f of ch.filters) {
    const body = bodyAfter(f)
    if (body) made = { body, at: f.pointer, type: f.definition.type }
  }
  const file = displayPath(ch.file)
  if (made === undefined) {
    const json = jsonTypesAccepted(ch.source)
    return json.length === 0 ? [] : mllps.map((d) =>
      `${file}#${d.pointer}: mllp sends ER7 text, but the http-listener at ${ch.source!.pointer} accepts JSON (${json.join(', ')}) and no filter turns it into ER7: a JSON message would go to error; set its contentTypes to ["x-application/hl7-v2+er7"], or map the JSON to the HL7 v2 shape and add { "type": "hl7v2", "config": { "to": "er7" } }`)
  }
  if (made.body !== 'json') return []
  return mllps.map((d) =>
    `${file}#${d.pointer}: mllp sends ER7 text, but the ${made.type} filter at ${made.at} leaves JSON: every message would go to error; add { "type": "hl7v2", "config": { "to": "er7" } } after it (or deliver the JSON with an http destination)`)
}

/** The media types of an http-listener's `contentTypes` that accept JSON (which it emits parsed, as JSON); none for another source. */
function jsonTypesAccepted(source: PartView | undefined): string[] {
  if (source?.definition.type !== 'http-listener' || !Array.isArray(source.config.contentTypes)) return []
  return (source.config.contentTypes as string[]).filter((pattern) => {
    const matcher = new RegExp(`^${pattern.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`, 'i')
    return matcher.test('application/json') || isJsonContentType(pattern.replace(/\*/g, 'x'))
  })
}

/** An HL7 field reference written with a dash (`PID-3.1`, `MSH-10`, `OBX[2]-5`). */
const DASHED_FIELD = /^[A-Z][A-Z0-9]{2}(\[\d+\])?-\d/

/**
 * On an mllp-listener's ER7 messages, `orderBy` and `searchKeys` read HL7 terse paths (`PID.3.1`);
 * an HL7 field written with a dash (`PID-3.1`) is JSONata instead (PID minus 3.1) and gives no value.
 */
function dashedKeyWarnings(ch: ChannelView): string[] {
  if (ch.source?.definition.type !== 'mllp-listener') return []
  const keys: Array<[string, string, string]> = Object.entries(ch.options.searchKeys ?? {}).map(([name, expr]) => [`/options/searchKeys/${name}`, expr, 'the key would never get a value'])
  if (ch.options.orderBy !== undefined) keys.unshift(['/options/orderBy', ch.options.orderBy, 'every message would go to error (or under orderByDefault)'])
  const file = displayPath(ch.file)
  return keys.flatMap(([at, expr, consequence]) => {
    const terse = dashedFieldAsTerse(expr)
    const fix = terse !== undefined ? `write ${JSON.stringify(terse)}` : segmentPathAsJsonata(expr) ? 'write an HL7 terse path such as "PID.3.1"' : undefined
    return fix === undefined ? [] : [`${file}#${at}: ${JSON.stringify(expr)} is not an HL7 terse path: on the ER7 messages of the mllp-listener it is JSONata and gives no value, so ${consequence}; ${fix}`]
  })
}

/** A segment named first (`PID`, `OBX`), as an HL7 path starts. */
const SEGMENT_FIRST = /^[A-Z][A-Z0-9]{2}(?![A-Za-z0-9_])/

/**
 * True for an expression that reads an HL7 segment the JSONata way (`PID[0].\`3\`[0].\`1\``, the shape
 * `hl7v2` gives to JSON): on ER7 text it gives no value. Terse paths and other JSONata are not.
 */
function segmentPathAsJsonata(expr: string): boolean {
  return SEGMENT_FIRST.test(expr) && parseTersePath(expr) === undefined
}

/** The terse path a dashed HL7 field reference means (`PID-3.1` → `PID.3.1`), or undefined for any other expression. */
function dashedFieldAsTerse(expr: string): string | undefined {
  if (!DASHED_FIELD.test(expr) || parseTersePath(expr) !== undefined) return undefined
  const terse = expr.replace(/-/g, '.')
  return parseTersePath(terse) !== undefined ? terse : undefined
}

/**
 * Whether `file` holds an alerts file rather than a channel: a JSON object with `webhooks` or
 * `alerts` and neither `name` nor `source` (a channel's own `alerts` block sits beside its name).
 * A file that cannot be read or parsed is not: the channel loader then reports why.
 */
async function looksLikeAlertsFile(file: string): Promise<boolean> {
  try {
    const data: unknown = JSON.parse(await readFile(file, 'utf8'))
    if (typeof data !== 'object' || data === null || Array.isArray(data)) return false
    return ('webhooks' in data || 'alerts' in data) && !('name' in data) && !('source' in data)
  } catch {
    return false
  }
}

/** The parsed JSON of a file, or undefined when it cannot be read or parsed (its loader says why). */
async function readJson(path: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, 'utf8'))
  } catch {
    return undefined
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

/** A channel file checked: its problems, and the channel when it loaded, else its JSON when it parses as an object. */
interface ChannelCheck {
  problems: ConfigProblem[]
  channel?: LoadedChannel
  raw?: Record<string, unknown>
  /** Of a channel with problems: what the loader warned of before it gave up. */
  warnings?: string[]
}

/** Loads a channel file: the channel, or its problems and (when it parses as an object) its JSON. */
async function checkChannel(path: string, env: NodeJS.ProcessEnv): Promise<ChannelCheck> {
  try {
    return { problems: [], channel: await loadChannel(path, { env }) }
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e
    const raw = await readJson(path)
    return isObject(raw) ? { problems: e.problems, raw, warnings: e.warnings } : { problems: e.problems, warnings: e.warnings }
  }
}

/**
 * The warnings of a checked channel: the loader's and those about transport and content, also for a
 * channel with problems (as far as its JSON tells, see `viewOfBroken`), so that fixing the errors
 * does not bring a second round of messages.
 */
async function warningsOf(c: ChannelCheck, path: string): Promise<string[]> {
  const view: ChannelView | undefined = c.channel ?? (c.raw && await viewOfBroken(c.raw, path, c.problems))
  return [...(c.channel?.warnings ?? c.warnings ?? []), ...(view ? [...transportWarnings(view), ...contentWarnings(view)] : [])]
}

/**
 * What the warnings read of a channel with problems: its JSON, without the components, options and
 * credentials that have problems of their own (a component's type may then be unknown, its config
 * anything).
 */
async function viewOfBroken(raw: Record<string, unknown>, path: string, problems: readonly ConfigProblem[]): Promise<ChannelView> {
  const own = problems.filter((p) => p.file === displayPath(path))
  const bad = (ptr: string) => own.some((p) => p.pointer === ptr || p.pointer.startsWith(`${ptr}/`))
  const part = (entry: unknown, pointer: string): PartView[] =>
    isObject(entry) && typeof entry.type === 'string' && (entry.config === undefined || isObject(entry.config)) && !bad(pointer)
      ? [{ definition: { type: entry.type }, config: (entry.config ?? {}) as Record<string, unknown>, pointer }]
      : []
  const parts = (list: unknown, at: string) => (Array.isArray(list) ? list.flatMap((e, i) => part(e, `${at}/${i}`)) : [])
  const options = isObject(raw.options) ? raw.options : {}
  const keys = isObject(options.searchKeys) ? Object.entries(options.searchKeys).filter(([k, v]) => typeof v === 'string' && !bad(`/options/searchKeys/${escapePointer(k)}`)) : []
  const credentials = await channelCredentials(raw, dirname(path), problems) ?? {}
  const source = part(raw.source, '/source')[0]
  return {
    file: path,
    credentials: Object.fromEntries(Object.entries(credentials).filter(([name]) => !bad(`/credentials/${escapePointer(name)}`))),
    ...(source ? { source } : {}),
    filters: parts(raw.filters, '/filters'),
    destinations: parts(raw.destinations, '/destinations'),
    options: {
      ...(typeof options.orderBy === 'string' && !bad('/options/orderBy') ? { orderBy: options.orderBy } : {}),
      ...(keys.length ? { searchKeys: Object.fromEntries(keys) as Record<string, string> } : {}),
    },
  }
}

/** Checks a channel file: its problems, its warnings (also when it has problems) and the channel when it loads. */
async function checkChannelFile(path: string, env: NodeJS.ProcessEnv): Promise<{ problems: ConfigProblem[]; warnings: string[]; test?: undefined; channel?: LoadedChannel }> {
  const c = await checkChannel(path, env)
  return { problems: c.problems, warnings: await warningsOf(c, path), ...(c.channel ? { channel: c.channel } : {}) }
}

/**
 * The channel's credentials as its JSON gives them, by name: its own and those of its credentials
 * file. Undefined when they cannot be known: `credentials` is not an object, or the credentials
 * file has problems of its own (the loader then reports no credential name as unknown either).
 */
async function channelCredentials(raw: Record<string, unknown>, dir: string, reported: readonly ConfigProblem[]): Promise<Record<string, unknown> | undefined> {
  if (raw.credentials !== undefined && !isObject(raw.credentials)) return undefined
  const own = Object.entries(raw.credentials ?? {}).filter(([, c]) => isObject(c))
  if (raw.credentialsFile === undefined) return Object.fromEntries(own)
  if (typeof raw.credentialsFile !== 'string') return undefined
  const path = resolve(dir, raw.credentialsFile)
  if (reported.some((p) => p.file === displayPath(path) || p.pointer === '/credentialsFile')) return undefined
  const shared = await readJson(path)
  return isObject(shared) ? { ...Object.fromEntries(Object.entries(shared).filter(([, c]) => isObject(c))), ...Object.fromEntries(own) } : undefined
}

/** The channel a test file with problems names, and its env values; undefined when the test file does not give them or they are among its problems. */
function channelOfBrokenTestFile(raw: unknown, path: string, problems: readonly ConfigProblem[]): { channel: string; env: Record<string, string> } | undefined {
  if (!isObject(raw) || typeof raw.channel !== 'string') return undefined
  if (problems.some((p) => p.pointer === '/channel' || p.pointer === '/env' || p.pointer.startsWith('/env/'))) return undefined
  return { channel: resolve(dirname(path), raw.channel), env: (raw.env ?? {}) as Record<string, string> }
}

/**
 * The names a test file gives that its channel does not have, as weir test would refuse them: a
 * credential in `server.clients` (and the other places a credential is named) that is no OAuth
 * credential of the channel, an `mllp.destinations` entry that is no mllp destination of it.
 * Against a channel with problems, each as far as its JSON tells: its credentials, its destinations'
 * names and types.
 */
async function testFileNameProblems(t: TestFile, c: ChannelCheck): Promise<ConfigProblem[]> {
  if (c.channel) return [...unknownClientsOfFile(t, c.channel), ...unknownMllpDestinationsOfFile(t, c.channel)]
  if (!c.raw) return []
  const out: ConfigProblem[] = []
  const credentials = await channelCredentials(c.raw, dirname(t.channel), c.problems)
  if (credentials) out.push(...unknownCredentialNamesOfFile(t, Object.keys(credentials).filter((n) => (credentials[n] as Record<string, unknown>).grant !== 'static')))
  const destinations = destinationsOf(c.raw)
  if (Array.isArray(c.raw.destinations) && destinations.length === c.raw.destinations.length) {
    const scripts = [{ script: t.mllp, pointer: '/mllp' }, ...t.cases.map((tc, i) => ({ script: tc.mllp, pointer: `/cases/${i}/mllp` }))]
    out.push(...unknownMllpDestinationProblems(scripts, destinations, t.displayName))
  }
  return out
}

/**
 * Checks a test file: its schema, the channel it names (when it names one, even if the test file has
 * problems of its own) and, once it loads, the names it gives against that channel.
 */
async function checkTestFile(path: string, env: NodeJS.ProcessEnv): Promise<{ problems: ConfigProblem[]; warnings: string[]; test?: TestFile; channel?: LoadedChannel }> {
  const problems: ConfigProblem[] = []
  let test: TestFile | undefined
  try {
    test = await loadTestFile(path)
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e
    problems.push(...e.problems)
  }
  const target = test ? { channel: test.channel, env: test.env } : channelOfBrokenTestFile(await readJson(path), path, problems)
  if (!target) return { problems, warnings: [] }
  const c = await checkChannel(target.channel, { ...env, ...target.env })
  problems.push(...c.problems)
  if (test) problems.push(...await testFileNameProblems(test, c))
  return { problems, warnings: await warningsOf(c, target.channel), ...(test ? { test } : {}), ...(c.channel ? { channel: c.channel } : {}) }
}

/** Each JSON pointer of `value` with its position in document order. */
function documentOrder(value: unknown, pointer = '', out = new Map<string, number>()): Map<string, number> {
  out.set(pointer, out.size)
  if (Array.isArray(value)) value.forEach((v, i) => documentOrder(v, `${pointer}/${i}`, out))
  else if (isObject(value)) for (const [k, v] of Object.entries(value)) documentOrder(v, `${pointer}/${escapePointer(k)}`, out)
  return out
}

/**
 * The problems by file (`files` first, in that order, then the others as they come) and, within a
 * file, in the order of the file: a problem at a pointer the file does not have (a value it lacks)
 * sits with the nearest one it has. Problems at the same place keep their order.
 */
async function sortProblems(problems: readonly ConfigProblem[], files: readonly string[]): Promise<ConfigProblem[]> {
  const rank = new Map<string, number>()
  for (const f of [...files, ...problems.map((p) => p.file)]) if (!rank.has(f)) rank.set(f, rank.size)
  const orders = new Map<string, Map<string, number>>()
  for (const f of new Set(problems.map((p) => p.file))) orders.set(f, documentOrder(await readJson(resolve(f))))
  const position = (p: ConfigProblem) => {
    const order = orders.get(p.file)!
    for (let at = p.pointer; ; at = at.slice(0, at.lastIndexOf('/'))) {
      const i = order.get(at)
      if (i !== undefined || at === '') return i ?? 0
    }
  }
  return [...problems].sort((a, b) => rank.get(a.file)! - rank.get(b.file)! || position(a) - position(b))
}

/** Checks one file as `kind`; throws what its loader throws, or every problem found. Warnings to stderr, `ok …` to stdout unless quiet. */
async function check(file: string, kind: 'channel' | 'alerts', io: CommandIO, quiet: boolean): Promise<void> {
  const path = resolve(io.cwd, file)
  if (kind === 'alerts' || (!file.endsWith('.test.json') && await looksLikeAlertsFile(path))) {
    const loaded = await loadAlerts(path, { env: io.env })
    for (const w of loaded.warnings) io.err(`warning: ${w}`)
    if (!quiet) io.out(`ok ${file}: alerts file, ${loaded.alerts.length} alert(s), webhooks ${Object.keys(loaded.webhooks).join(', ')}`)
    return
  }
  const isTest = file.endsWith('.test.json')
  const { problems, warnings, test, channel } = isTest ? await checkTestFile(path, io.env) : await checkChannelFile(path, io.env)
  for (const w of warnings) io.err(`warning: ${w}`)
  if (problems.length) throw new ConfigError(await sortProblems(problems, [displayPath(path), ...(test ? [displayPath(test.channel)] : [])]))
  const ch = channel!
  if (quiet) return
  if (test) io.out(`ok ${file}: test of channel "${ch.name}", ${test.cases.length} case(s)`)
  else io.out(`ok ${file}: channel "${ch.name}", source ${ch.source.definition.type}, ${ch.filters.length} filter(s), destinations ${ch.destinations.map((d) => d.name).join(', ')}`)
}

export async function run(args: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parseFlags(args, { quiet: { type: 'boolean', default: false }, alerts: { type: 'string', multiple: true } }, 'validate')
  const files = [...positionals.map((file) => ({ file, kind: 'channel' as const })), ...(values.alerts ?? []).map((file) => ({ file, kind: 'alerts' as const }))]
  if (files.length === 0) {
    io.err(usage)
    return 2
  }
  let failed = 0
  for (const { file, kind } of files) {
    try {
      await check(file, kind, io, values.quiet)
    } catch (e) {
      if (!isWeirError(e) || !e.userError) throw e
      failed++
      const lines = e.code === 'ERR_CONFIG_INVALID' ? (e as ConfigError).problems.map(formatProblem) : [`${file}: ${e.message}`]
      for (const l of lines) io.err(l)
    }
  }
  if (files.length > 1 || failed) io.err(`${files.length - failed} valid, ${failed} invalid`)
  return failed ? 1 : 0
}
