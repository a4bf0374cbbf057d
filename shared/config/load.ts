import { readFile } from 'node:fs/promises'
import { readFileSync, existsSync } from 'node:fs'
import { resolve, dirname, relative } from 'node:path'
import type { ComponentDefinition, ComponentKind, JsonSchema } from '../component.ts'
import { ConfigError, type ConfigProblem, formatProblem, isWeirError } from '../errors.ts'
import { Secret } from '../secret.ts'
import { keyExpressionProblem } from '../key-expression.ts'
import { compileSchema, validateCollectingSecrets } from './ajv.ts'
import { channelSchema, NAME_PATTERN } from './channel-schema.ts'
import { ajvProblems, escapePointer, locate, nearest, unknownCredential } from './problems.ts'
import { isModuleReference, loadComponentModule, moduleTypeProblem, type Registry } from './registry.ts'
import type { ChannelAlertsBlock, ChannelAlertsContext, LoadedChannel, LoadedComponent, LoadedDestination, RetryPolicy, CircuitBreakerPolicy, ChannelOptions } from './types.ts'
import { credentialSchema, checkCredential as checkCredentialConfig, checkCredentialKeys as checkKeys } from '../oauth/index.ts'

const checkCredential = checkCredentialConfig as (config: Record<string, unknown>) => Array<[string, string]>
const checkCredentialKeys = checkKeys as (config: Record<string, unknown>) => Array<[string, string]>
const CHANNEL_SCHEMA = channelSchema(credentialSchema)
/** A shared credentials file: named credentials, the same shape as a channel's `credentials`. */
const CREDENTIALS_FILE_SCHEMA: JsonSchema = { type: 'object', propertyNames: { pattern: NAME_PATTERN }, additionalProperties: credentialSchema }

export interface LoadOptions {
  /** Components a channel may name (the engine passes the built-ins: engine/load.ts). */
  registry: Registry
  /** Environment for `$env` references; `process.env` by default. */
  env?: NodeJS.ProcessEnv
  /**
   * For commands that never send a secret (`weir credentials explain`, `import`): a `$env` or
   * `$file` reference that does not resolve becomes an empty secret instead of a problem, and the
   * keys of its credential are not parsed. Never for a channel that runs.
   */
  allowUnsetSecrets?: boolean
  /**
   * For commands about one credential (`weir token`, `weir credentials`): only the secret references
   * of this credential are read and its keys parsed. The other credentials' and the components'
   * references are left unread (each an empty secret that says so), and the components' own checks
   * and the `alerts` block's, which read files (TLS certificates, schemas, webhooks' secrets), are not
   * run: a host needs no access to what the command does not use. The channel's structure is checked
   * as ever. Never for a channel that runs.
   */
  onlyCredential?: string
  /** How the file is named in messages; the path relative to the working directory by default. */
  displayName?: string
  /** Credentials already prepared elsewhere (a channel's, for the webhooks of its `alerts` block), known besides the file's own. */
  credentials?: Record<string, Readonly<Record<string, unknown>>>
  /**
   * Checks the channel's `alerts` block beyond its schema (engine/alerts, passed by engine/load.ts):
   * problems with pointers into this file, and warnings as `file#pointer: message`. Without it the
   * block is only schema-checked. What it returns is kept as the channel's `alertsChecked`, so that
   * the engine runs the block without preparing it again.
   */
  checkAlerts?: (block: ChannelAlertsBlock, ctx: ChannelAlertsContext) => Promise<{ problems: ConfigProblem[]; warnings: string[] }>
}

/** Formats a file name for messages: relative to the working directory when that is shorter. */
export function displayPath(file: string): string {
  const rel = relative(process.cwd(), file)
  return rel && !rel.startsWith('..') ? rel : file
}

/** Parses JSON, turning a syntax error into a problem with line and column. */
export function parseJsonWithLocation(text: string, file: string): unknown {
  try {
    return JSON.parse(text)
  } catch (e) {
    const msg = String((e as Error).message)
    const lc = /\(line (\d+) column (\d+)\)/.exec(msg)
    const pos = /at position (\d+)/.exec(msg)
    let line: number, column: number
    if (lc) {
      line = Number(lc[1]); column = Number(lc[2])
    } else {
      const offset = pos ? Number(pos[1]) : unexpectedTokenOffset(msg, text) ?? text.length
      const before = text.slice(0, offset).split('\n')
      line = before.length
      column = before[before.length - 1]!.length + 1
    }
    // V8 quotes a snippet of the text (`, ..."clientSecret": s3cr3t"... is not valid JSON`): it may hold a secret, so it goes.
    const reason = msg.replace(/^Unexpected/, 'unexpected').replace(/\s*in JSON at position \d+.*$/s, '').replace(/\s*\(line \d+ column \d+\)/, '').replace(/,\s*(?:\.\.\.)?".*$/s, '')
    throw new ConfigError([{ file, pointer: '', message: `invalid JSON at line ${line}, column ${column}: ${reason}` }])
  }
}

/**
 * Where V8's "Unexpected token 'x', ..."<context>"... is not valid JSON" points (Node 20 gives no
 * position for it): the context is the 10 characters either side of the token, so a leading "..."
 * puts the token 10 characters into it; otherwise the token is the first such character outside a
 * string.
 */
function unexpectedTokenOffset(msg: string, text: string): number | undefined {
  const m = /^Unexpected token '(.)', (\.\.\.)?"(.*)"(?:\.\.\.)? is not valid JSON$/s.exec(msg)
  if (!m) return undefined
  const [, token, clipped, context] = m
  if (clipped) {
    const at = text.indexOf(context!)
    return at < 0 ? undefined : at + 10
  }
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (inString) {
      if (c === '\\') i++
      else if (c === '"') inString = false
    } else if (c === '"') inString = true
    else if (c === token) return i
  }
  return undefined
}

/** Reads, validates and prepares a channel file. Throws ConfigError listing every problem at once. */
export async function loadChannel(file: string, options: LoadOptions): Promise<LoadedChannel> {
  const abs = resolve(file)
  const name = options.displayName ?? displayPath(abs)
  let text: string
  try {
    text = await readFile(abs, 'utf8')
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    throw new ConfigError([{ file: name, pointer: '', message: code === 'ENOENT' ? 'file not found' : `cannot read file (${code ?? (e as Error).message})` }])
  }
  return loadChannelObject(parseJsonWithLocation(text, name), { ...options, file: abs, displayName: name })
}

const deepFreeze = <T>(v: T): T => {
  if (v && typeof v === 'object' && !(v instanceof Secret) && !Object.isFrozen(v)) {
    Object.freeze(v)
    for (const k of Object.keys(v)) deepFreeze((v as Record<string, unknown>)[k])
  }
  return v
}

export interface SecretContext {
  file: string; dir: string; env: NodeJS.ProcessEnv; problems: ConfigProblem[]; warnings: ConfigProblem[]
  /** With `allowUnsetSecrets`: where the references that did not resolve are (each now an empty secret). */
  unset?: ConfigProblem[]
  /** With `onlyCredential`: the one credential whose secret references are read. */
  onlyCredential?: string
}

/** A reference that does not resolve: a problem, or an empty secret where the context allows unset ones. */
function unresolved(sc: SecretContext, pointer: string, source: string, message: string): Secret | undefined {
  const problem: ConfigProblem = { file: sc.file, pointer, message, code: 'ERR_SECRET_UNRESOLVED' }
  if (!sc.unset) {
    sc.problems.push(problem)
    return undefined
  }
  sc.unset.push(problem)
  return new Secret('', `${source} (not set)`)
}

/** Replaces each writeOnly value at `paths` (inside `data`, reported under `prefix`) by a Secret. */
export function resolveSecrets(data: unknown, paths: string[], prefix: string, sc: SecretContext): void {
  for (const path of paths) {
    const loc = locate(data, path)
    if (!loc) continue
    const value = loc.parent[loc.key]
    const pointer = prefix + path
    let secret: Secret | undefined
    if (typeof value === 'string') {
      sc.warnings.push({ file: sc.file, pointer, message: 'literal secret in the channel file; use {"$env": "NAME"} or {"$file": "path"}' })
      secret = new Secret(value, 'literal')
    } else if (value && typeof value === 'object' && '$env' in value) {
      const envName = String((value as { $env: string }).$env)
      const v = sc.env[envName]
      if (v === undefined || v === '') secret = unresolved(sc, pointer, `$env:${envName}`, `environment variable "${envName}" is not set`)
      else secret = new Secret(v, `$env:${envName}`)
    } else if (value && typeof value === 'object' && '$file' in value) {
      const rel = String((value as { $file: string }).$file)
      const p = resolve(sc.dir, rel)
      if (!existsSync(p)) secret = unresolved(sc, pointer, `$file:${rel}`, `secret file "${rel}" not found (looked for ${p})`)
      else {
        try {
          secret = new Secret(readFileSync(p, 'utf8').replace(/\s+$/, ''), `$file:${rel}`)
        } catch (e) {
          secret = unresolved(sc, pointer, `$file:${rel}`, `secret file "${rel}" cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`)
        }
      }
    }
    if (secret) loc.parent[loc.key] = secret
  }
}

/**
 * The secrets at `paths` (inside `data`) that are not read (`onlyCredential`): a reference becomes
 * an empty secret saying where it would come from, a literal a secret as resolveSecrets makes it.
 */
function leaveUnread(data: unknown, paths: string[]): void {
  for (const path of paths) {
    const loc = locate(data, path)
    const value = loc?.parent[loc.key]
    if (!loc || !value) continue
    const ref = value as { $env?: string; $file?: string }
    loc.parent[loc.key] = typeof value === 'string' ? new Secret(value, 'literal') : new Secret('', `${ref.$env !== undefined ? `$env:${ref.$env}` : `$file:${ref.$file}`} (not read)`)
  }
}

/** What loading one component needs from its channel: where it is, the registry, the problems so far and the credentials it may name. */
interface ComponentContext {
name: string
dir: string
registry: LoadOptions['registry']
problems: ConfigProblem[]
sc: SecretContext
isBad: (pointer: string) => boolean
credentials: Record<string, Readonly<Record<string, unknown>>>
/** False when a credentials file could not be read: references to it are then not reported as unknown too. */
credentialsKnown: boolean
/** The channel's modules by type, each with the first pointer that names it: a type is one component's. */
moduleTypes: Map<string, { def: ComponentDefinition; pointer: string }>
}

/**
 * One component entry of a channel (`/source`, `/filters/0`, `/destinations/1`): its definition
 * (built in by name, or a module path), its config validated against the definition's schema, its
 * secrets resolved, the credential it names checked, and the definition's own check run. Problems
 * go to `cx.problems`; undefined when there were any.
 */
async function loadComponent<K extends ComponentKind>(kind: K, entry: Record<string, unknown>, pointer: string, cx: ComponentContext): Promise<LoadedComponent<K> | undefined> {
  const { name, dir, registry, problems, sc, isBad, credentials, credentialsKnown } = cx
  if (!entry || typeof entry !== 'object' || typeof entry.type !== 'string' || isBad(`${pointer}/type`) || isBad(pointer) && !entry.type) return undefined
  const type = entry.type
  let def: ComponentDefinition | undefined
  if (isModuleReference(type)) {
    try {
      def = await loadComponentModule(type, dir, kind)
    } catch (e) {
      if (!isWeirError(e)) throw e
      problems.push({ file: name, pointer: `${pointer}/type`, message: e.message, code: e.code })
      return undefined
    }
    const clash = moduleTypeProblem(def, registry, cx.moduleTypes, pointer)
    if (clash) {
      problems.push({ file: name, pointer: `${pointer}/type`, message: clash, code: 'ERR_COMPONENT_INVALID' })
      return undefined
    }
  } else {
    def = registry.get(type)
    if (!def || def.kind !== kind) {
      const known = registry.list(kind).map((d) => d.type)
      const guess = nearest(type, known)
      const other = def ? ` ("${type}" is a ${def.kind})` : ''
      problems.push({
        file: name, pointer: `${pointer}/type`,
        code: 'ERR_COMPONENT_UNKNOWN',
        message: `unknown ${kind} type "${type}"${other}` + (guess ? `; did you mean "${guess}"?` : '') + `; known ${kind} types: ${known.join(', ') || '(none)'}; or give a module path such as "./my-${kind}.ts"`,
      })
      return undefined
    }
  }
  const config = (entry.config ?? {}) as Record<string, unknown>
  // The channel schema checks the configs of built-in components too: what it found is reported already.
  const reported = isBad(`${pointer}/config`)
  if (reported && (typeof config !== 'object' || config === null || Array.isArray(config))) return undefined
  const res = validateCollectingSecrets(compileSchema(def.configSchema), config)
  const before = problems.length
  const schemaProblems = res.valid ? [] : ajvProblems(res.errors, name, `${pointer}/config`, config)
  if (!reported) problems.push(...schemaProblems)
  // A config that does not match its schema still has its secret references and the credential it
  // names checked, where its schema problems are not: fixing those brings no new problem to light.
  const wrong = (ptr: string) => isBad(ptr) || schemaProblems.some((p) => p.pointer === ptr || p.pointer.startsWith(`${ptr}/`))
  const secretPaths = res.secretPaths.filter((p) => !wrong(`${pointer}/config${p}`))
  if (sc.onlyCredential === undefined) resolveSecrets(config, secretPaths, `${pointer}/config`, sc)
  else leaveUnread(config, secretPaths)
  if (typeof config.credential === 'string' && !credentials[config.credential] && credentialsKnown && !wrong(`${pointer}/config/credential`)) {
    problems.push({ file: name, pointer: `${pointer}/config/credential`, message: unknownCredential(config.credential, Object.keys(credentials)) })
  }
  if (reported || !res.valid) return undefined
  // A definition's check may read files (TLS certificates, schemas): not for a command about one credential.
  if (def.check && sc.onlyCredential === undefined && problems.length === before) {
    try {
      for (const [p, m] of await def.check(config, { channelDir: sc.dir })) problems.push({ file: name, pointer: `${pointer}/config${p}`, message: m })
    } catch (e) {
      problems.push({ file: name, pointer: `${pointer}/config`, message: isWeirError(e) ? e.message : `check failed: ${(e as Error).message}` })
    }
  }
  if (problems.length !== before) return undefined
  return { definition: def as ComponentDefinition<K>, config: deepFreeze(config), pointer }
}

/**
 * Validates a parsed channel object. `file` locates relative module and `$file` paths.
 * The channel test harness uses this to load a channel whose endpoints it has replaced.
 */
export async function loadChannelObject(raw: unknown, options: LoadOptions & { file: string }): Promise<LoadedChannel> {
  const file = resolve(options.file)
  const dir = dirname(file)
  const name = options.displayName ?? displayPath(file)
  const { registry } = options
  const env = options.env ?? process.env
  const problems: ConfigProblem[] = []
  const warnings: ConfigProblem[] = []
  const sc: SecretContext = {
    file: name, dir, env, problems, warnings,
    ...(options.allowUnsetSecrets ? { unset: [] } : {}), ...(options.onlyCredential !== undefined ? { onlyCredential: options.onlyCredential } : {}),
  }

  const data = structuredClone(raw) as Record<string, unknown>
  const top = validateCollectingSecrets(compileSchema(CHANNEL_SCHEMA), data)
  if (!top.valid) {
    problems.push(...ajvProblems(top.errors, name, '', data))
    // Component entries that are themselves malformed cannot be checked further.
    if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new ConfigError(problems, top.errors)
  }
  const badPointers = new Set(problems.map((p) => p.pointer))
  const isBad = (ptr: string) => [...badPointers].some((b) => b === ptr || b.startsWith(ptr + '/'))

  const { credentials, credentialsKnown } = await channelCredentials(data, top.secretPaths, options.credentials, sc, isBad)
  const cx: ComponentContext = { name, dir, registry, problems, sc, isBad, credentials, credentialsKnown, moduleTypes: new Map() }
  const component = <K extends ComponentKind>(kind: K, entry: Record<string, unknown>, pointer: string) => loadComponent(kind, entry, pointer, cx)

  const source = data.source ? await component('source', data.source as Record<string, unknown>, '/source') : undefined
  const filters: LoadedComponent<'filter'>[] = []
  const filterEntries = Array.isArray(data.filters) ? (data.filters as Record<string, unknown>[]) : []
  for (const [i, f] of filterEntries.entries()) {
    const c = await component('filter', f, `/filters/${i}`)
    // A filter's optional name goes with it, so that the message log says which filter failed.
    if (c) filters.push(typeof f.name === 'string' ? { ...c, name: f.name } : c)
  }
  const destinations = await loadDestinations(data.destinations, (d, pointer) => component('destination', d, pointer), problems, name)
  problems.push(...keyExpressionProblems(data.options as Partial<ChannelOptions> | undefined, isBad, name))

  const alerts = data.alerts as ChannelAlertsBlock | undefined
  let alertsChecked: { problems: ConfigProblem[]; warnings: string[] } | undefined
  // The block's webhooks are channels of their own, with their secrets: not for a command about one credential.
  if (alerts && options.checkAlerts && options.onlyCredential === undefined && !isBad('/alerts') && !isBad('/name')) {
    const destinationNames = (Array.isArray(data.destinations) ? (data.destinations as Array<{ name?: unknown } | null>) : []).flatMap((d) => (typeof d?.name === 'string' ? [d.name] : []))
    alertsChecked = await options.checkAlerts(alerts, { channel: String(data.name), file, displayName: name, credentials, credentialsKnown, destinations: destinationNames, env })
    problems.push(...alertsChecked.problems)
  }

  const warningLines = [...warnings.map(formatProblem), ...(alertsChecked?.warnings ?? [])]
  if (problems.length) throw new ConfigError(problems, top.errors, warningLines)
  return {
    name: String(data.name),
    ...(typeof data.description === 'string' ? { description: data.description } : {}),
    file, dir, credentials,
    source: source!,
    filters, destinations,
    options: deepFreeze(data.options as ChannelOptions),
    warnings: warningLines,
    ...(alerts ? { alerts: deepFreeze(alerts) } : {}),
    ...(alertsChecked ? { alertsChecked } : {}),
    ...(sc.unset ? { unsetSecrets: sc.unset } : {}),
  }
}

/**
 * The credentials a channel may name: `known` ones prepared elsewhere, the channel's own, then a
 * shared file's, each checked against its provider's rules and its secret references resolved.
 * `credentialsKnown` is false when the credentials file could not be read: references to it are
 * then not reported as unknown too.
 */
async function channelCredentials(data: Record<string, unknown>, secretPaths: string[], known: LoadOptions['credentials'], sc: SecretContext, isBad: (pointer: string) => boolean):
  Promise<{ credentials: Record<string, Readonly<Record<string, unknown>>>; credentialsKnown: boolean }> {
  const credentials: Record<string, Readonly<Record<string, unknown>>> = { ...known }
  const credData = (data.credentials ?? {}) as Record<string, Record<string, unknown>>
  if (typeof credData === 'object' && credData !== null) Object.assign(credentials, prepareCredentials(credData, secretPaths.filter((p) => p.startsWith('/credentials/')), '/credentials', sc, isBad))
  if (typeof data.credentialsFile !== 'string' || isBad('/credentialsFile')) return { credentials, credentialsKnown: true }
  const path = resolve(sc.dir, data.credentialsFile)
  const shared = await loadCredentialsFile(path, sc)
  for (const [cname, cred] of Object.entries(shared ?? {})) {
    if (credentials[cname]) sc.problems.push({ file: sc.file, pointer: `/credentials/${escapePointer(cname)}`, message: `credential "${cname}" is also defined in ${displayPath(path)}; use one` })
    else credentials[cname] = cred
  }
  return { credentials, credentialsKnown: shared !== undefined }
}

/** The channel's destinations, each with its retry and breaker policies; a name used twice is a problem at the second. */
async function loadDestinations(entries: unknown, load: (entry: Record<string, unknown>, pointer: string) => Promise<LoadedComponent<'destination'> | undefined>,
  problems: ConfigProblem[], name: string): Promise<LoadedDestination[]> {
  const destinations: LoadedDestination[] = []
  const seenNames = new Map<string, number>()
  for (const [i, d] of (Array.isArray(entries) ? (entries as Record<string, unknown>[]) : []).entries()) {
    if (d && typeof d.name === 'string') {
      if (seenNames.has(d.name)) problems.push({ file: name, pointer: `/destinations/${i}/name`, message: `duplicate destination name "${d.name}" (also /destinations/${seenNames.get(d.name)}/name)` })
      else seenNames.set(d.name, i)
    }
    const c = await load(d, `/destinations/${i}`)
    if (c && d) destinations.push({ ...c, name: String(d.name), retry: deepFreeze(d.retry as RetryPolicy), circuitBreaker: deepFreeze(d.circuitBreaker as CircuitBreakerPolicy) })
  }
  return destinations
}

/** Problems of the key expressions (`options.orderBy`, each of `options.searchKeys`) that the schema let through. */
function keyExpressionProblems(options: Partial<ChannelOptions> | undefined, isBad: (pointer: string) => boolean, name: string): ConfigProblem[] {
  const { orderBy, searchKeys } = options ?? {}
  const keyExpressions: Array<[string, unknown]> = [['/options/orderBy', orderBy], ...Object.entries(typeof searchKeys === 'object' && searchKeys !== null ? searchKeys : {}).map(([k, v]): [string, unknown] => [`/options/searchKeys/${escapePointer(k)}`, v])]
  const problems: ConfigProblem[] = []
  for (const [pointer, expr] of keyExpressions) {
    const problem = typeof expr === 'string' && !isBad(pointer) ? keyExpressionProblem(expr) : undefined
    if (problem !== undefined) problems.push({ file: name, pointer, message: problem })
  }
  return problems
}

/**
 * A shared credentials file: a JSON object of named credentials, the same shape as a channel's
 * `credentials`, referenced by several channels with `"credentialsFile"`. Its problems are
 * reported against its own name and pointers; its `$file` references are relative to it.
 */
async function loadCredentialsFile(path: string, channel: SecretContext): Promise<Record<string, Readonly<Record<string, unknown>>> | undefined> {
  const name = displayPath(path)
  const { problems } = channel
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch {
    problems.push({ file: name, pointer: '', message: 'credentials file not found' })
    return undefined
  }
  let data: Record<string, Record<string, unknown>>
  try {
    data = parseJsonWithLocation(text, name) as Record<string, Record<string, unknown>>
  } catch (e) {
    problems.push(...(e as ConfigError).problems)
    return undefined
  }
  const res = validateCollectingSecrets(compileSchema(CREDENTIALS_FILE_SCHEMA), data)
  if (!res.valid) {
    problems.push(...ajvProblems(res.errors, name, '', data))
    return undefined
  }
  const before = problems.length
  const creds = prepareCredentials(data, res.secretPaths, '', { ...channel, file: name, dir: dirname(path) }, () => false)
  return problems.length === before ? creds : undefined
}

/** Checks provider rules and resolves the secret references of named credentials; returns them frozen. */
function prepareCredentials(creds: Record<string, Record<string, unknown>>, secretPaths: string[], prefix: string, sc: SecretContext, isBad: (pointer: string) => boolean): Record<string, Readonly<Record<string, unknown>>> {
  for (const [cname, cred] of Object.entries(creds)) {
    const ptr = `${prefix}/${escapePointer(cname)}`
    if (isBad(ptr) || typeof cred !== 'object' || cred === null) continue
    for (const [p, m] of checkCredential(cred)) sc.problems.push({ file: sc.file, pointer: ptr + p, message: m })
  }
  const paths = secretPaths.filter((p) => !isBad(p)).map((p) => p.slice(prefix.length))
  const reads = (cname: string) => sc.onlyCredential === undefined || cname === sc.onlyCredential
  const own = `/${escapePointer(sc.onlyCredential ?? '')}/`
  resolveSecrets(creds, sc.onlyCredential === undefined ? paths : paths.filter((p) => p.startsWith(own)), prefix, sc)
  if (sc.onlyCredential !== undefined) leaveUnread(creds, paths.filter((p) => !p.startsWith(own)))
  // With its secrets resolved, a credential's keys are parsed as the engine will sign with them (no network).
  for (const [cname, cred] of Object.entries(creds)) {
    const ptr = `${prefix}/${escapePointer(cname)}`
    const within = (pointer: string) => pointer === ptr || pointer.startsWith(`${ptr}/`)
    const reported = [...sc.problems, ...(sc.unset ?? [])].some((p) => p.file === sc.file && within(p.pointer))
    if (isBad(ptr) || typeof cred !== 'object' || cred === null || reported || !reads(cname)) continue
    for (const [p, m] of checkCredentialKeys(cred)) sc.problems.push({ file: sc.file, pointer: ptr + p, message: m })
  }
  const out: Record<string, Readonly<Record<string, unknown>>> = {}
  for (const [cname, cred] of Object.entries(creds)) if (cred && typeof cred === 'object') out[cname] = deepFreeze(cred)
  return out
}
