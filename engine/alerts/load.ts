import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { builtinComponents } from '../../components/index.ts'
import { compileSchema, validateCollectingSecrets } from '../../shared/config/ajv.ts'
import { displayPath, loadChannelObject, parseJsonWithLocation } from '../../shared/config/load.ts'
import { ajvProblems, escapePointer, nearest, unknownCredential } from '../../shared/config/problems.ts'
import { createRegistry } from '../../shared/config/registry.ts'
import type { ChannelAlertsBlock, ChannelAlertsContext, LoadedChannel } from '../../shared/config/types.ts'
import { ConfigError, type ConfigProblem } from '../../shared/errors.ts'
import { FEED_TYPE, feedSourceDefinition } from './feed.ts'
import { channelNames, referenceProblems } from './references.ts'
import { alertsFileSchema, type Condition } from './schema.ts'

/** One validated alert of the file. */
export interface AlertRule {
  name: string
  condition: Condition
  channels: '*' | readonly string[]
  destination?: string
  credential?: string
  consecutiveFailures?: number
  maxAgeSeconds?: number
  count?: number
  windowSeconds?: number
  webhook: string
  minIntervalMs: number
  clearAfterMs: number
  /** The channel whose file holds the alert (its `alerts` block); absent for the alerts file. */
  scope?: string
}

export interface LoadedAlerts {
  file: string
  checkIntervalMs: number
  alerts: AlertRule[]
  /** The internal channel of each webhook, by `webhookKey`: `weir-alerts.<name>` for the file's, `weir-alerts.<channel>.<name>` for a channel's. */
  webhooks: Record<string, LoadedChannel>
  /** Non-fatal findings (literal secrets), as `file#pointer: message`. */
  warnings: string[]
}

const DEFAULT_CHECK_INTERVAL_MS = 5000

/** Prefix of the internal channels that deliver notifications. */
export const ALERTS_CHANNEL_PREFIX = 'weir-alerts.'

/** Keeps a channel's alert names apart from another channel's and the file's: `orders/down` (names hold no "/"). */
const scoped = (scope: string | undefined, name: string) => (scope === undefined ? name : `${scope}/${name}`)
/** Identifies an alert in the engine (state keys): its name, with its channel for a channel file's alert. */
export const alertId = (rule: AlertRule): string => scoped(rule.scope, rule.name)
/** The key of a rule's webhook in `LoadedAlerts.webhooks`. */
export const webhookKey = (rule: AlertRule): string => scoped(rule.scope, rule.webhook)

interface RawFile {
  checkIntervalMs: number
  credentials: Record<string, unknown>
  webhooks: Record<string, Record<string, unknown>>
  alerts: AlertRule[]
}

/**
 * Reads and validates an alerts file (`weir run --alerts`): every problem at once as
 * `ERR_CONFIG_INVALID`, each with the file and the JSON pointer of the offending value.
 * @example
 * const alerts = await loadAlerts('alerts.json', { env: process.env })
 */
export async function loadAlerts(file: string, options: { env?: NodeJS.ProcessEnv } = {}): Promise<LoadedAlerts> {
  const abs = resolve(file)
  const name = displayPath(abs)
  const text = await readFile(abs, 'utf8').catch((e: NodeJS.ErrnoException) => {
    throw new ConfigError([{ file: name, pointer: '', message: e.code === 'ENOENT' ? 'file not found' : `cannot read file (${e.code ?? 'error'})` }])
  })
  const data = parseJsonWithLocation(text, name) as RawFile
  const res = validateCollectingSecrets(compileSchema(alertsFileSchema), data)
  // The schema's problems, then what it let through checked further: every problem at once.
  const problems = res.valid ? [] : ajvProblems(res.errors, name, '', data)
  if (!isObject(data)) throw new ConfigError(problems, res.errors)
  const bad = new Set(problems.map((p) => p.pointer))
  const hooks = isObject(data.webhooks) ? data.webhooks : {}
  const credentials = isObject(data.credentials) ? data.credentials : {}
  problems.push(...ruleProblems({ webhooks: hooks, alerts: Array.isArray(data.alerts) ? data.alerts : [] }, { file: name, at: '', bad }))
  const wc: WebhookContext = { file: abs, name, env: options.env ?? process.env, problems, at: '/webhooks', channel: (hook) => ALERTS_CHANNEL_PREFIX + hook }
  const { webhooks, warnings } = await webhookChannels(soundWebhooks(hooks, bad), (credential) => ({ raw: { [credential]: credentials[credential] } }), Object.keys(credentials), wc)
  if (problems.length) throw new ConfigError(problems, res.errors)
  return { file: abs, checkIntervalMs: data.checkIntervalMs, alerts: data.alerts, webhooks, warnings }
}

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x)

/** Whether `pointer`, or a value under it, has a problem in `bad`. */
const under = (bad: ReadonlySet<string>, pointer: string) => [...bad].some((b) => b === pointer || b.startsWith(pointer + '/'))

/**
 * The webhooks of an alerts file the schema found sound, to be loaded as channels: not those with a
 * schema problem of their own, or with a credential while a credential has one (their problems are
 * reported already; loaded, they would be reported twice), nor any when `/webhooks` itself has one.
 */
function soundWebhooks(hooks: RawFile['webhooks'], bad: ReadonlySet<string>): RawFile['webhooks'] {
  if (bad.has('/webhooks')) return {}
  return Object.fromEntries(Object.entries(hooks).filter(([hook, config]) =>
    !under(bad, `/webhooks/${escapePointer(hook)}`) && !(isObject(config) && config.credential !== undefined && under(bad, '/credentials'))))
}

/**
 * The alerts of channels' `alerts` blocks added to those of the alerts file (if any), to run in one
 * notifier: undefined when there are none. Refuses two webhooks that would run as the same internal channel,
 * and rules naming a channel, destination or credential the channels being run do not have (see referenceProblems).
 * @example
 * const alerts = await mergeAlerts(await loadAlerts('alerts.json'), channels, process.env)
 */
export async function mergeAlerts(file: LoadedAlerts | undefined, channels: readonly LoadedChannel[], env: NodeJS.ProcessEnv): Promise<LoadedAlerts | undefined> {
  const merged: LoadedAlerts = file ? { ...file, alerts: [...file.alerts], webhooks: { ...file.webhooks } } : { file: '', checkIntervalMs: DEFAULT_CHECK_INTERVAL_MS, alerts: [], webhooks: {}, warnings: [] }
  const owner = new Map(Object.entries(merged.webhooks).map(([hook, ch]) => [ch.name, `${displayPath(merged.file)}#/webhooks/${escapePointer(hook)}`]))
  // A rule naming a channel, destination or credential that is not run would never fire: refused.
  const problems: ConfigProblem[] = file ? referenceProblems(file.alerts, channels.map(channelNames), { file: displayPath(file.file), at: '/alerts' }) : []
  for (const ch of channels) {
    if (!ch.alerts) continue
    const { destinations } = channelNames(ch)
    const ctx = { channel: ch.name, file: ch.file, displayName: displayPath(ch.file), credentials: ch.credentials, credentialsKnown: true, destinations, env }
    // Loaded with channelAlerts as its checkAlerts (engine/load.ts), the channel's block is prepared
    // already (with the environment it was loaded with); otherwise it is prepared here. Either way
    // channelAlerts checked the block's references to the channel's destinations and credentials.
    const prepared = isPrepared(ch.alertsChecked) ? ch.alertsChecked : await channelAlerts(ch.alerts, ctx)
    problems.push(...prepared.problems)
    for (const [hook, webhook] of Object.entries(prepared.webhooks)) {
      const at = `/alerts/webhooks/${escapePointer(hook)}`
      const other = owner.get(webhook.name)
      if (other) problems.push({ file: ctx.displayName, pointer: at, message: `runs as the internal channel "${webhook.name}", as ${other} does; rename one` })
      owner.set(webhook.name, `${ctx.displayName}#${at}`)
      merged.webhooks[scoped(ch.name, hook)] = webhook
    }
    merged.alerts.push(...prepared.alerts)
  }
  if (problems.length) throw new ConfigError(problems)
  return file || merged.alerts.length ? merged : undefined
}

/**
 * A channel's `alerts` block checked beyond its schema and prepared: unique names, known webhooks
 * and credentials, only this channel watched, destinations and credentials the channel has (see
 * referenceProblems), each webhook's `http` options (pointers into the channel file).
 * engine/load.ts passes it as `LoadOptions.checkAlerts`.
 */
export async function channelAlerts(block: ChannelAlertsBlock, ctx: ChannelAlertsContext): Promise<PreparedAlerts> {
  const alerts = block.alerts.map((a) => ({ ...a, channels: a.channels ?? [ctx.channel], scope: ctx.channel }) as AlertRule)
  const problems = ruleProblems({ webhooks: block.webhooks, alerts }, { file: ctx.displayName, at: '/alerts', channel: ctx.channel })
  const wc: WebhookContext = { file: ctx.file, name: ctx.displayName, env: ctx.env, problems, at: '/alerts/webhooks', channel: (hook) => `${ALERTS_CHANNEL_PREFIX}${ctx.channel}.${hook}` }
  const names = ctx.credentialsKnown ? Object.keys(ctx.credentials) : undefined
  const { webhooks, warnings } = await webhookChannels(block.webhooks, (credential) => ({ prepared: { [credential]: ctx.credentials[credential]! } }), names, wc)
  // A rule naming a destination or credential the channel does not have would never fire (weir validate and weir run alike).
  problems.push(...referenceProblems(alerts, [{ name: ctx.channel, destinations: ctx.destinations, ...(names ? { credentials: names } : {}) }], { file: ctx.displayName, at: '/alerts/alerts' }))
  return { alerts, webhooks, problems, warnings }
}

/** A channel's `alerts` block prepared by channelAlerts. */
interface PreparedAlerts {
  alerts: AlertRule[]
  webhooks: Record<string, LoadedChannel>
  problems: ConfigProblem[]
  warnings: string[]
}

/** What channelAlerts returned, as opposed to another `checkAlerts`'s problems and warnings alone. */
const isPrepared = (x: unknown): x is PreparedAlerts => typeof x === 'object' && x !== null && Array.isArray((x as PreparedAlerts).alerts) && typeof (x as PreparedAlerts).webhooks === 'object'

interface RuleScope {
  /** Name of the file in messages. */
  file: string
  /** Pointer of the `webhooks` and `alerts` pair: "" in an alerts file, "/alerts" in a channel file. */
  at: string
  /** The channel of a channel file: the only one its alerts may watch. */
  channel?: string
  /** Pointers the schema found a problem at (an alerts file's): what is under them is not checked again. */
  bad?: ReadonlySet<string>
}

/** What the schema cannot say: unique names, known webhooks, options that belong to the condition, the channel of a channel file. */
function ruleProblems(data: Pick<RawFile, 'webhooks' | 'alerts'>, scope: RuleScope): ConfigProblem[] {
  const problems: ConfigProblem[] = []
  const seen = new Map<string, number>()
  const hooks = Object.keys(data.webhooks)
  const only: Record<string, Condition> = { destination: 'destination-failing', consecutiveFailures: 'destination-failing', credential: 'credential-fail-fast', maxAgeSeconds: 'queue-age', count: 'messages-failing', windowSeconds: 'messages-failing' }
  const bad = scope.bad ?? new Set<string>()
  for (const [i, a] of data.alerts.entries()) {
    const base = `${scope.at}/alerts/${i}`
    if (!isObject(a)) continue
    const ok = (key: string) => !under(bad, base + key)
    const at = (key: string, message: string) => problems.push({ file: scope.file, pointer: base + key, message })
    if (typeof a.name === 'string' && ok('/name')) {
      if (seen.has(a.name)) at('/name', `duplicate alert name "${a.name}" (also ${scope.at}/alerts/${seen.get(a.name)}/name)`)
      else seen.set(a.name, i)
    }
    if (typeof a.webhook === 'string' && ok('/webhook') && !bad.has(`${scope.at}/webhooks`) && !hooks.includes(a.webhook)) {
      const guess = nearest(a.webhook, hooks)
      at('/webhook', `unknown webhook "${a.webhook}"` + (guess ? `; did you mean "${guess}"?` : '') + `; defined: ${hooks.join(', ')}`)
    }
    if (typeof a.condition !== 'string' || !ok('/condition')) continue
    for (const [key, condition] of Object.entries(only)) {
      if (key in a && a.condition !== condition) at(`/${key}`, `applies only to the "${condition}" condition`)
    }
    if (a.condition === 'queue-age' && a.maxAgeSeconds === undefined) at('', 'must have required property "maxAgeSeconds" (condition "queue-age")')
    if (scope.channel !== undefined && Array.isArray(a.channels)) {
      for (const [j, c] of a.channels.entries()) {
        if (c !== scope.channel) at(`/channels/${j}`, `an alert in a channel file watches only its own channel "${scope.channel}", not "${c}"; put alerts on other channels in their files or in the --alerts file`)
      }
    }
  }
  return problems
}

interface WebhookContext {
  file: string
  name: string
  env: NodeJS.ProcessEnv
  problems: ConfigProblem[]
  /** Pointer of the `webhooks` object. */
  at: string
  /** The internal channel's name of a webhook. */
  channel: (hook: string) => string
}

/** A webhook's credential: its raw config (an alerts file's, checked with the webhook) or prepared already (a channel's). */
type WebhookCredential = { raw: Record<string, unknown> } | { prepared: Record<string, Readonly<Record<string, unknown>>> }

/** The internal channel of each webhook that loads; the problems of the others go to `wc.problems`. `known` undefined: credentials not checked. */
async function webhookChannels(hooks: Readonly<Record<string, Readonly<Record<string, unknown>>>>, credentialOf: (name: string) => WebhookCredential, known: string[] | undefined, wc: WebhookContext) {
  const webhooks: Record<string, LoadedChannel> = {}
  const warnings: string[] = []
  for (const [hook, config] of Object.entries(hooks)) {
    const credential = config.credential
    if (typeof credential === 'string' && known && !known.includes(credential)) {
      wc.problems.push({ file: wc.name, pointer: `${wc.at}/${escapePointer(hook)}/credential`, message: unknownCredential(credential, known) })
      continue
    }
    const channel = await webhookChannel(hook, config, typeof credential === 'string' ? credentialOf(credential) : { raw: {} }, wc)
    if (channel) {
      webhooks[hook] = channel
      warnings.push(...channel.warnings)
    }
  }
  return { webhooks, warnings }
}

/**
 * The internal channel of one webhook: a feed source and the built-in `http` destination, loaded
 * like a channel file (so secrets, credentials and the destination's checks are the same), with
 * its problems reported at the webhook's own pointers.
 */
async function webhookChannel(hook: string, config: Readonly<Record<string, unknown>>, credential: WebhookCredential, wc: WebhookContext): Promise<LoadedChannel | undefined> {
  const at = `${wc.at}/${escapePointer(hook)}`
  const { retry, circuitBreaker, ...http } = config
  const raw = {
    name: wc.channel(hook),
    credentials: 'raw' in credential ? credential.raw : {},
    source: { type: FEED_TYPE },
    destinations: [{ name: 'webhook', type: 'http', config: { ...http, method: 'POST', contentType: 'application/json' }, retry, circuitBreaker }],
    options: { concurrency: 1, onError: 'skip' },
  }
  const remap = (pointer: string) => pointer.replace(/^\/destinations\/0\/config(?=\/|$)/, at).replace(/^\/destinations\/0(?=\/|$)/, at)
  try {
    const registry = createRegistry([...builtinComponents, feedSourceDefinition])
    const channel = await loadChannelObject(raw, { registry, env: wc.env, file: wc.file, displayName: wc.name, ...('prepared' in credential ? { credentials: credential.prepared } : {}) })
    return { ...channel, warnings: channel.warnings.map((w) => w.replace(/#(\/destinations\/0[^:]*)/, (_, p: string) => '#' + remap(p))) }
  } catch (e) {
    if ((e as { code?: string }).code !== 'ERR_CONFIG_INVALID') throw e
    wc.problems.push(...(e as ConfigError).problems.map((p) => ({ ...p, pointer: remap(p.pointer) })))
    return undefined
  }
}
