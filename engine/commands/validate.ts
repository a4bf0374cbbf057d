import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { parseFlags, type CommandIO } from '../cli-io.ts'
import { loadChannel } from '../load.ts'
import { formatProblem, isWeirError, ConfigError } from '../../shared/errors.ts'
import { loadTestFile } from '../harness/test-file.ts'
import { unknownClientsOfFile, unknownMllpDestinationsOfFile } from '../harness/run.ts'
import type { LoadedChannel } from '../../shared/config/types.ts'
import { displayPath } from '../../shared/config/load.ts'
import { isJsonContentType } from '../../shared/component.ts'
import { parseTersePath } from '../../shared/hl7v2/index.ts'
import { loadAlerts } from '../alerts/load.ts'

export const summary = 'check channel files and alerts files: JSON, schemas, component configs, secrets (all errors at once)'
export const usage = `usage: weir validate <channel.json...> [--alerts alerts.json]... [--quiet]

Checks each channel file: JSON syntax (line and column), the channel schema, each component's
config against its own schema, secret references ({"$env": ...}, {"$file": ...}) and provider
rules of credential presets. Every problem is listed as file#/json/pointer: message.
Literal secrets in the file are warnings, and so are http:// token, issuer, JWKS and API URLs to a
host that is not loopback, and a listener on all interfaces without authentication or TLS
(warnings go to stderr and do not change the exit status). A file named *.test.json is checked as a channel test
file (its schema, then the channel it names, with the test's env values).
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

/** Warnings about transport security a schema cannot see: clear-text URLs to other hosts, an open listener. */
export function transportWarnings(ch: LoadedChannel): string[] {
  const fields = urlFields(ch.credentials, '/credentials')
  for (const c of [ch.source, ...ch.filters, ...ch.destinations]) urlFields(c.config, `${c.pointer}/config`, fields)
  const file = displayPath(ch.file) // as the loader's own warnings name it
  const out = fields.filter(([, v]) => cleartextRemote(v)).map(([at]) => `${file}#${at}: http:// to a host that is not loopback: tokens, secrets and messages travel unencrypted; use https`)
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
function bodyAfter(f: LoadedChannel['filters'][number]): 'json' | 'er7' | 'unknown' | undefined {
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
export function contentWarnings(ch: LoadedChannel): string[] {
  return [...mllpFedJsonWarnings(ch), ...dashedKeyWarnings(ch)]
}

/**
 * An `mllp` destination sends ER7 text: a channel whose last transforming filter leaves JSON (a `map`
 * to FHIR, `hl7v2` to json) sends every message to error, and one with no transforming filter after
 * an http-listener that accepts JSON each JSON message, though each component's config is valid.
 */
function mllpFedJsonWarnings(ch: LoadedChannel): string[] {
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
      `${file}#${d.pointer}: mllp sends ER7 text, but the http-listener at ${ch.source.pointer} accepts JSON (${json.join(', ')}) and no filter turns it into ER7: a JSON message would go to error; set its contentTypes to ["x-application/hl7-v2+er7"], or map the JSON to the HL7 v2 shape and add { "type": "hl7v2", "config": { "to": "er7" } }`)
  }
  if (made.body !== 'json') return []
  return mllps.map((d) =>
    `${file}#${d.pointer}: mllp sends ER7 text, but the ${made.type} filter at ${made.at} leaves JSON: every message would go to error; add { "type": "hl7v2", "config": { "to": "er7" } } after it (or deliver the JSON with an http destination)`)
}

/** The media types of an http-listener's `contentTypes` that accept JSON (which it emits parsed, as JSON); none for another source. */
function jsonTypesAccepted(source: LoadedChannel['source']): string[] {
  if (source.definition.type !== 'http-listener' || !Array.isArray(source.config.contentTypes)) return []
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
function dashedKeyWarnings(ch: LoadedChannel): string[] {
  if (ch.source.definition.type !== 'mllp-listener') return []
  const keys: Array<[string, string, string]> = Object.entries(ch.options.searchKeys ?? {}).map(([name, expr]) => [`/options/searchKeys/${name}`, expr, 'the key would never get a value'])
  if (ch.options.orderBy !== undefined) keys.unshift(['/options/orderBy', ch.options.orderBy, 'every message would go to error (or under orderByDefault)'])
  const file = displayPath(ch.file)
  return keys.flatMap(([at, expr, consequence]) => {
    const terse = dashedFieldAsTerse(expr)
    return terse === undefined ? [] : [`${file}#${at}: ${JSON.stringify(expr)} is not an HL7 terse path: on the ER7 messages of the mllp-listener it is JSONata and gives no value, so ${consequence}; write ${JSON.stringify(terse)}`]
  })
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

/** Checks one file as `kind`; throws what its loader throws. Warnings to stderr, `ok …` to stdout unless quiet. */
async function check(file: string, kind: 'channel' | 'alerts', io: CommandIO, quiet: boolean): Promise<void> {
  const path = resolve(io.cwd, file)
  if (kind === 'alerts' || (!file.endsWith('.test.json') && await looksLikeAlertsFile(path))) {
    const loaded = await loadAlerts(path, { env: io.env })
    for (const w of loaded.warnings) io.err(`warning: ${w}`)
    if (!quiet) io.out(`ok ${file}: alerts file, ${loaded.alerts.length} alert(s), webhooks ${Object.keys(loaded.webhooks).join(', ')}`)
    return
  }
  if (file.endsWith('.test.json')) {
    const t = await loadTestFile(path)
    const ch = await loadChannel(t.channel, { env: { ...io.env, ...t.env } })
    // As weir test would refuse it: a server.clients entry naming no OAuth credential of the channel,
    // an mllp.destinations entry naming no mllp destination of it.
    const unknownClients = [...unknownClientsOfFile(t, ch), ...unknownMllpDestinationsOfFile(t, ch)]
    if (unknownClients.length) throw new ConfigError(unknownClients)
    for (const w of [...ch.warnings, ...transportWarnings(ch), ...contentWarnings(ch)]) io.err(`warning: ${w}`)
    if (!quiet) io.out(`ok ${file}: test of channel "${ch.name}", ${t.cases.length} case(s)`)
    return
  }
  const ch = await loadChannel(path, { env: io.env })
  for (const w of [...ch.warnings, ...transportWarnings(ch), ...contentWarnings(ch)]) io.err(`warning: ${w}`)
  if (!quiet) {
    io.out(`ok ${file}: channel "${ch.name}", source ${ch.source.definition.type}, ${ch.filters.length} filter(s), destinations ${ch.destinations.map((d) => d.name).join(', ')}`)
  }
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
