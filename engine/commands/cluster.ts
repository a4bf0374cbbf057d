import { expectArgs, parseSubcommandFlags, type CommandIO } from '../cli-io.ts'
import { errorCodes } from '../../shared/errors.ts'
import { differencesText, outlineDifferences, type DefinitionConflict, type DefinitionDifference, type DefinitionOutline, type EngineStatus } from '../../shared/store/postgres/engines.ts'
import { openPostgresFor, storeOptions, storeUrlOf } from '../store.ts'

export const summary = 'show the engines of a cluster sharing one PostgreSQL store'
export const usage = `usage: weir cluster status [--store postgres://…] [--json]

Lists every engine of the cluster: its id, host, process, version, heartbeat age, the messages
it has claimed and the pollers it leads. An engine that stopped cleanly has left; one that died
shows as expired until another engine takes its claims over (within its lease). Then, per channel,
whether the live engines that run it run the same definition (the fingerprint of its file and the
modules it loads): DIFFERENT names which engine runs which, and where each definition after the
first differs from the first, as JSON pointers into the channel file (/destinations/0/config/url;
"added here": that definition has it, the first not; "missing here": the other way round;
files/<path> for a module or schema file a component loads), at most 5 then how many more. Where
cannot be told when an engine of an older weir records no outline of its definition; one that
records no definitions at all shows as unknown.

  --store URL   the cluster's PostgreSQL store (default $WEIR_STORE)
  --store-password-file F   a file whose first line is the store's password
  --json        print the engines as JSON (each with channels: its fingerprints by channel, or
                null; and conflicts: each channel it runs with another definition than the first
                live engine that runs it, that engine, and the differences, each a pointer and a
                change, when they can be told)

exit status: 0 when every engine listed is live and they agree on every channel, 1 when one has
expired or live engines run different definitions of a channel, 2 on bad usage`

const age = (ms: number) => (ms < 10_000 ? `${(ms / 1000).toFixed(1)}s` : `${Math.round(ms / 1000)}s`)

/** The columns of `weir cluster status` (and the dashboard's cluster page). */
export const ENGINE_COLUMNS = ['ENGINE', 'HOST', 'PID', 'VERSION', 'HEARTBEAT', 'STATE', 'CLAIMED', 'LEADS'] as const

/** One engine as a row of ENGINE_COLUMNS: heartbeat as `1.2s ago`, state `live` or `expired`, leads joined (`-` for none). */
export function engineRow(e: EngineStatus): string[] {
  return [e.id, e.host, String(e.pid), e.version, `${age(e.heartbeatAgeMs)} ago`, e.expired ? 'expired' : 'live', String(e.claimed), e.leads.join(', ') || '-']
}

/**
 * A channel as the live engines that record definitions run it: each fingerprint with the engines
 * that have it (more than one: they disagree), in the order the engines started. Each fingerprint
 * after the first has `differences`: where its definition differs from the first's (as a refusal to
 * join names them: `added` that one has it, the first not), null when that cannot be told (an engine
 * of an older weir records no outline), empty when the outlines do not tell.
 */
export interface ChannelAgreement {
  channel: string
  engines: number
  fingerprints: Array<{ fingerprint: string; engines: string[]; differences?: DefinitionDifference[] | null }>
}

/** Per channel (by name), the definitions the live engines run it with; expired engines and those that record none are left out. */
export function channelAgreement(engines: readonly EngineStatus[]): ChannelAgreement[] {
  const byChannel = new Map<string, Map<string, EngineStatus[]>>()
  for (const e of engines) {
    if (e.expired || !e.channels) continue
    for (const [channel, fingerprint] of Object.entries(e.channels)) {
      const of = byChannel.get(channel) ?? new Map<string, EngineStatus[]>()
      of.set(fingerprint, [...(of.get(fingerprint) ?? []), e])
      byChannel.set(channel, of)
    }
  }
  return [...byChannel].sort(([a], [b]) => a.localeCompare(b)).map(([channel, of]) => {
    const first = outlineOf([...of.values()][0]!, channel)
    return {
      channel, engines: [...of.values()].reduce((n, runs) => n + runs.length, 0),
      fingerprints: [...of].map(([fingerprint, runs], i) => {
        if (i === 0) return { fingerprint, engines: runs.map((e) => e.id) }
        const outline = outlineOf(runs, channel)
        return { fingerprint, engines: runs.map((e) => e.id), differences: first && outline ? outlineDifferences(outline, first) : null }
      }),
    }
  })
}

/** The outline of `channel` that one of `engines` (all running the same definition of it) records, if any does. */
const outlineOf = (engines: readonly EngineStatus[], channel: string): DefinitionOutline | undefined =>
  engines.find((e) => e.outlines?.[channel])?.outlines?.[channel]

/** The columns of the channels table of `weir cluster status`. */
export const CHANNEL_COLUMNS = ['CHANNEL', 'ENGINES', 'DEFINITION'] as const

/** A fingerprint as shown: its first 16 hex digits. */
const short = (fingerprint: string) => fingerprint.slice(0, fingerprint.indexOf(':') + 17)

/** How many places a row of `weir cluster status` names per definition that differs; the rest are counted. */
const NAMED_PLACES = 5

/** Where a definition differs from the first one of its channel (see ChannelAgreement), as a row says it after its engines. */
function whereText(differences: readonly DefinitionDifference[] | null | undefined): string {
  if (differences === undefined) return ''
  if (differences === null) return ', where cannot be told (an engine of an older weir records no outline)'
  return differences.length > 0 ? `, differing${differencesText(differences, NAMED_PLACES)}` : ', where cannot be told'
}

/** One channel as a row of CHANNEL_COLUMNS. */
export function channelRow(a: ChannelAgreement): string[] {
  const [first] = a.fingerprints
  const definition = a.fingerprints.length > 1
    ? `DIFFERENT: ${a.fingerprints.map((f) => `${short(f.fingerprint)} on ${f.engines.join(', ')}${whereText(f.differences)}`).join('; ')}`
    : `${a.engines === 1 ? 'one engine' : 'same on every engine'} (${short(first!.fingerprint)})`
  return [a.channel, String(a.engines), definition]
}

/** An engine as `weir cluster status --json` and GET /api/cluster give it (see enginesJson). */
export type EngineJson = Omit<EngineStatus, 'startedAt' | 'outlines'> & { startedAt: string; conflicts: DefinitionConflict[] }

/**
 * The engines as `weir cluster status --json` and GET /api/cluster give them: the start as an ISO
 * time, the outlines left out, and `conflicts`: each channel the engine runs with another
 * definition than the first live engine to have started that runs it, that engine, and where they
 * differ (absent when that cannot be told), as a refusal to join names them.
 */
export function enginesJson(engines: readonly EngineStatus[], agreement = channelAgreement(engines)): EngineJson[] {
  return engines.map(({ outlines: _outlines, ...e }) => ({ ...e, startedAt: new Date(e.startedAt).toISOString(), conflicts: conflictsOf(e.id, agreement, engines) }))
}

/** The channels of `agreement` that engine `id` runs with another definition than the first (see enginesJson). */
function conflictsOf(id: string, agreement: readonly ChannelAgreement[], engines: readonly EngineStatus[]): DefinitionConflict[] {
  const conflicts: DefinitionConflict[] = []
  for (const a of agreement) {
    const mine = a.fingerprints.findIndex((f) => f.engines.includes(id))
    if (mine < 1) continue
    const first = engines.find((e) => e.id === a.fingerprints[0]!.engines[0])!
    const differences = a.fingerprints[mine]!.differences
    conflicts.push({ channel: a.channel, id: first.id, host: first.host, pid: first.pid, ...(differences?.length ? { differences } : {}) })
  }
  return conflicts
}

/** The live engines that record no definitions (an older weir), one line each. */
export function unknownDefinitions(engines: readonly EngineStatus[]): string[] {
  return engines.filter((e) => !e.expired && !e.channels)
    .map((e) => `unknown: ${e.id} (host ${e.host}, pid ${e.pid}) records no channel definitions (an older weir): whether it runs the same ones cannot be told`)
}

function printTable(rows: string[][], io: CommandIO): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  for (const r of rows) io.out(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  '))
}

/** The flags of `weir cluster status`; the store's others (--lease-ms, --commit-delay-ms), as weir run takes them, are accepted and unused. */
const STATUS_FLAGS = { ...storeOptions, json: { type: 'boolean', default: false } } as const

export async function run(args: string[], io: CommandIO): Promise<number> {
  const { sub, values, positionals } = parseSubcommandFlags(args, { status: STATUS_FLAGS }, 'cluster')
  if (!sub) {
    io.err(usage)
    return 2
  }
  expectArgs(positionals, ['status'], 'weir cluster status [--store postgres://…] [--json]')
  const url = storeUrlOf(values, io)
  if (url === undefined) throw new errorCodes.ERR_USAGE('weir cluster needs the cluster\'s store: --store postgres://… or $WEIR_STORE')
  const store = await openPostgresFor({ url, owner: false, ...(values['store-password-file'] ? { passwordFile: values['store-password-file'] } : {}) })
  try {
    const engines = await store.cluster()
    const agreement = channelAgreement(engines)
    if (values.json) io.out(JSON.stringify(enginesJson(engines, agreement)))
    else if (engines.length === 0) io.out('no engines')
    else {
      printTable([[...ENGINE_COLUMNS], ...engines.map(engineRow)], io)
      const unknown = unknownDefinitions(engines)
      if (agreement.length > 0 || unknown.length > 0) io.out('')
      if (agreement.length > 0) printTable([[...CHANNEL_COLUMNS], ...agreement.map(channelRow)], io)
      for (const line of unknown) io.out(line)
    }
    return engines.some((e) => e.expired) || agreement.some((a) => a.fingerprints.length > 1) ? 1 : 0
  } finally {
    await store.close()
  }
}
