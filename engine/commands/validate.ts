import { parseArgs } from 'node:util'
import type { CommandIO } from '../cli-io.ts'
import { loadChannel } from '../load.ts'
import { formatProblem, isWeirError, ConfigError } from '../../shared/errors.ts'
import { loadTestFile } from '../harness/test-file.ts'
import type { LoadedChannel } from '../../shared/config/types.ts'
import { displayPath } from '../../shared/config/load.ts'
import { isJsonContentType } from '../../shared/component.ts'

export const summary = 'check channel files: JSON, schemas, component configs, secrets (all errors at once)'
export const usage = `usage: weir validate <channel.json...> [--quiet]

Checks each channel file: JSON syntax (line and column), the channel schema, each component's
config against its own schema, secret references ({"$env": ...}, {"$file": ...}) and provider
rules of credential presets. Every problem is listed as file#/json/pointer: message.
Literal secrets in the file are warnings, and so are http:// token, issuer, JWKS and API URLs to a
host that is not loopback, and a listener on all interfaces without authentication or TLS
(warnings go to stderr and do not change the exit status). A file named *.test.json is checked as a channel test
file (its schema, then the channel it names, with the test's env values).

  --quiet   print only problems and warnings

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
 * Warnings about what a schema cannot see in the order of filters: an `mllp` destination sends ER7
 * text, so a channel whose last transforming filter leaves JSON (a `map` to FHIR, `hl7v2` to json)
 * would send every message to error, though each component's config is valid.
 */
export function contentWarnings(ch: LoadedChannel): string[] {
  let made: { body: 'json' | 'er7' | 'unknown'; at: string; type: string } | undefined
  for (const f of ch.filters) {
    const body = bodyAfter(f)
    if (body) made = { body, at: f.pointer, type: f.definition.type }
  }
  if (made?.body !== 'json') return []
  const file = displayPath(ch.file)
  return ch.destinations.filter((d) => d.definition.type === 'mllp').map((d) =>
    `${file}#${d.pointer}: mllp sends ER7 text, but the ${made.type} filter at ${made.at} leaves JSON: every message would go to error; add { "type": "hl7v2", "config": { "to": "er7" } } after it (or deliver the JSON with an http destination)`)
}

export async function run(args: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { quiet: { type: 'boolean', default: false } } })
  if (positionals.length === 0) {
    io.err(usage)
    return 2
  }
  let failed = 0
  for (const file of positionals) {
    try {
      if (file.endsWith('.test.json')) {
        const t = await loadTestFile(file)
        const ch = await loadChannel(t.channel, { env: { ...io.env, ...t.env } })
        for (const w of [...ch.warnings, ...transportWarnings(ch), ...contentWarnings(ch)]) io.err(`warning: ${w}`)
        if (!values.quiet) io.out(`ok ${file}: test of channel "${ch.name}", ${t.cases.length} case(s)`)
        continue
      }
      const ch = await loadChannel(file, { env: io.env })
      for (const w of [...ch.warnings, ...transportWarnings(ch), ...contentWarnings(ch)]) io.err(`warning: ${w}`)
      if (!values.quiet) {
        io.out(`ok ${file}: channel "${ch.name}", source ${ch.source.definition.type}, ${ch.filters.length} filter(s), destinations ${ch.destinations.map((d) => d.name).join(', ')}`)
      }
    } catch (e) {
      if (!isWeirError(e) || !e.userError) throw e
      failed++
      const lines = e.code === 'ERR_CONFIG_INVALID' ? (e as ConfigError).problems.map(formatProblem) : [`${file}: ${e.message}`]
      for (const l of lines) io.err(l)
    }
  }
  if (positionals.length > 1 || failed) io.err(`${positionals.length - failed} valid, ${failed} invalid`)
  return failed ? 1 : 0
}
