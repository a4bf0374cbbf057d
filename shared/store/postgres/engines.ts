import { hostname } from 'node:os'
import type { Db, Queryable } from './db.ts'
import { StoreError } from '../errors.ts'
import { newMessageId } from '../id.ts'
import { requeueClaimsOf, requeueOrphanedClaims } from './operations.ts'

/** An engine of the cluster as `weir cluster status` shows it. */
export interface EngineStatus {
  id: string
  host: string
  pid: number
  version: string
  startedAt: number
  /** Milliseconds since its last heartbeat (database clock). */
  heartbeatAgeMs: number
  /** Its lease ran out: it stopped heartbeating, and its claims go back to the queue at the next sweep. */
  expired: boolean
  claimed: number
  leads: string[]
  /** The fingerprint of each channel it runs, by name; null for an engine of an older weir, which records none. */
  channels: Record<string, string> | null
  /**
   * The outline of each channel it runs that live engines run with different definitions, by name,
   * to tell where they differ: read for those channels only, and only of a live engine. A channel
   * is absent when the engine records no outline of it (an older weir).
   */
  outlines?: Record<string, DefinitionOutline>
}

export interface LeaseOptions {
  /** How long an engine's claims and leaderships outlive its last heartbeat. Default 15,000 ms. */
  leaseMs: number
  version: string
  now: () => number
  /** Told when this engine's lease was lost (it was partitioned longer than the lease): it rejoins under a new id. */
  onLost(oldId: string, newId: string): void
  onRequeued(n: number, engines: string[]): void
  /** Told of the messages a requeue put in error instead (under way at too many unclean stops). */
  onGaveUp(messages: Array<{ id: string; channel: string }>): void
  onError(e: unknown): void
  /**
   * Told once when this engine, its lease lost, may not rejoin: a live engine runs one of its
   * channels with another definition (`e` is ERR_STORE, its `conflicts` the channels and engines).
   * The refusal is final: the heartbeat stops, and the engine claims and leads nothing more under
   * this lease; its owner is to stop it and close the store.
   */
  onRefused(e: DefinitionConflictError): void
  /** Renew on a timer, every third of the lease (default true); false: only `beat()` renews (tests that stall an engine). */
  timer?: boolean
  /**
   * The fingerprint of the definition of each channel this engine runs, by name: recorded with its
   * row, and compared with the live engines' as it joins (see `register`). None: nothing compared,
   * and the engine shows as unknown to others.
   */
  definitions?: Readonly<Record<string, string>>
  /**
   * The outline of each of those definitions, by channel name: JSON pointer → short digest of the
   * value there (engine/definition-fingerprint.ts `channelDefinition`), recorded with the row, so
   * that an engine refused is told where its definition differs from the live engine's.
   */
  outlines?: Readonly<Record<string, DefinitionOutline>>
}

/** Where in a channel's definition each value is, mapped to a short digest of it (never the value). */
export type DefinitionOutline = Readonly<Record<string, string>>

/**
 * A place where this engine's definition of a channel differs from a live engine's: a value
 * `changed`, `added` (this engine's has it, the live one's not) or `removed` (the other way round).
 */
export interface DefinitionDifference { pointer: string; change: 'changed' | 'added' | 'removed' }

/**
 * A channel this engine runs that a live engine runs with another definition; `differences` where,
 * when both engines record outlines that tell (not an engine of an older weir).
 */
export interface DefinitionConflict { channel: string; id: string; host: string; pid: number; differences?: DefinitionDifference[] }

/** ERR_STORE: this engine may not join the cluster, as a live engine runs one of its channels with another definition. */
export class DefinitionConflictError extends StoreError {
  /** Each channel run differently, with the first live engine to have started that runs it so. */
  readonly conflicts: readonly DefinitionConflict[]
  constructor(message: string, conflicts: readonly DefinitionConflict[], options: { cause?: unknown } = {}) {
    super(message, options)
    this.conflicts = conflicts
  }
}

/** The key of the advisory lock under which one engine at a time joins (inserts its row and compares definitions). */
const JOIN_LOCK = "hashtextextended('weir:join', 0)"

/** How many differences a refusal names per channel; the rest are counted. */
const NAMED_DIFFERENCES = 10

/**
 * Where a channel's definitions differ, as a refusal (and `weir cluster status`) names it:
 * ` at /destinations/0/config/url, /options/orderBy (added here)`, at most `most` places then how
 * many more, or nothing when unknown.
 */
export function differencesText(differences: readonly DefinitionDifference[] | undefined, most = NAMED_DIFFERENCES): string {
  if (!differences?.length) return ''
  const named = differences.slice(0, most)
    .map((d) => (d.change === 'changed' ? d.pointer : `${d.pointer} (${d.change === 'added' ? 'added here' : 'missing here'})`))
  const more = differences.length - named.length
  return ` at ${named.join(', ')}${more > 0 ? ` and ${more} more` : ''}`
}

/** Why an engine may not join: the channels it would run differently from live engines, and what to do. */
function definitionConflictMessage(conflicts: readonly DefinitionConflict[]): string {
  const which = conflicts.map((c, i) => `${i === 0 ? 'of channel' : 'and of channel'} "${c.channel}" differs from that of the live engine ${c.id} (host ${c.host}, pid ${c.pid})${differencesText(c.differences)}`)
  return `this engine's definition ${which.join(', ')}: every engine of a cluster must run the same definition of a channel (its file and the modules it loads), ` +
    'or each processes the messages it claims its own way. To change a channel, stop every engine, change the file everywhere and start them again; ' +
    'or deploy the new definition under a new channel name (an engine that died counts until its lease runs out)'
}

/**
 * The share of the lease, counted from when a renewal was sent, for which this engine vouches for
 * its claims once the renewal is confirmed: the rest (a third) is the margin that a delivery
 * started at the last moment has to end in before another engine could take the claim over.
 */
const VOUCHED_SHARE = 2 / 3

/**
 * This engine's membership of the cluster: a row in `weir_engines` with a lease renewed by a
 * heartbeat (every third of the lease), on the database's clock so machines' clocks do not matter.
 * Each heartbeat also sweeps: engines whose lease ran out are removed in the same transaction that
 * returns their claims to the queue and frees their leaderships. An engine that finds its own row
 * gone was taken over: it rejoins under a new id, so nothing it claimed before can be completed.
 * A claim holds a lock on its engine's row and claims nothing without it, so no message is ever
 * claimed under the id of an engine that has no row (one the sweep would never return to the queue).
 *
 * Renewals (of the lease and of leaderships) run on connections of their own (`renewals`, a small
 * pool), never behind message traffic on the store's pool: a busy pool must not make another engine
 * declare this one dead. The sweep, which may wait for locks and move many rows, runs on the store's
 * pool (`db`), apart from the renewals: a slow sweep delays no renewal either.
 */
export class EngineLease {
  id = newEngineId()
  private timer: NodeJS.Timeout | undefined
  private renewing: Promise<void> | undefined
  private sweeping: Promise<void> | undefined
  /**
   * No sweeping before this time (local clock): a lease ahead when this engine joins and after a
   * heartbeat failed, so that after an outage of the database every engine has had a turn to renew
   * before any is declared dead (an engine that joins as the database comes back cannot tell).
   */
  private sweepAfter = 0
  /**
   * Until when this engine vouches for its claims (see `vouched()`), on both local clocks: the
   * monotonic one (`performance.now()`, blind to a change of the wall clock) and the wall clock
   * (`Date.now()`, which goes on while a machine is suspended); either running out is enough.
   */
  private vouchedUntil = { mono: 0, wall: 0 }
  /** Told when a renewal has its answer (see `renewal()`). */
  private readonly waiting = new Set<() => void>()
  /** Why this engine, its lease lost, may not rejoin (see `LeaseOptions.onRefused`): set once, never cleared. */
  private refusal: DefinitionConflictError | undefined

  constructor(private readonly db: Db, private readonly renewals: Db, private readonly o: LeaseOptions) {}

  get leaseMs(): number {
    return this.o.leaseMs
  }

  /** Why this engine, its lease lost, may not rejoin the cluster (see `LeaseOptions.onRefused`); undefined while it may. */
  get refused(): DefinitionConflictError | undefined {
    return this.refusal
  }

  /** Joins the cluster; the first sweep comes a lease later (see `sweepAfter`), from the heartbeat. */
  async join(): Promise<void> {
    this.sweepAfter = Date.now() + this.o.leaseMs
    await this.register(this.o.leaseMs)
    if (this.o.timer === false) return
    this.timer = setInterval(() => void this.beat(), Math.max(100, Math.floor(this.o.leaseMs / 3)))
    this.timer.unref()
  }

  /**
   * Whether this engine can vouch for its claims now, by its own clock: two thirds of a lease have
   * not passed since it sent the last renewal that was confirmed. The database's clock counts the
   * lease from when the renewal ran there, no earlier, so no other engine can have taken the claims
   * over yet, and a delivery started now has the last third to end in before one could. An engine
   * that was frozen (SIGSTOP, a VM paused), starved or cut off longer than that cannot vouch until
   * a heartbeat tells whether its row is still there.
   */
  vouched(): boolean {
    if (this.refusal) return false
    return performance.now() < this.vouchedUntil.mono && Date.now() < this.vouchedUntil.wall
  }

  /** Resolves when the next renewal (or the one under way) has its answer: renewed, failed, or the lease found lost and rejoined (or refused: at once from then on). */
  renewal(): { settled: Promise<void>; cancel(): void } {
    // No renewal comes any more: the answer (nothing held) is known now.
    if (this.refusal) return { settled: Promise.resolve(), cancel: () => {} }
    let done!: () => void
    const settled = new Promise<void>((resolve) => { done = resolve })
    const told = () => { this.waiting.delete(told); done() }
    this.waiting.add(told)
    return { settled, cancel: told }
  }

  /**
   * Renews the lease (and every leadership held), then sweeps expired engines when it is time to;
   * renewals run one at a time, and so do sweeps, but a sweep under way never holds up a renewal.
   */
  async beat(): Promise<void> {
    if (this.refusal) return
    this.renewing ??= this.renew().catch((e) => {
      this.sweepAfter = Date.now() + this.o.leaseMs
      this.o.onError(e)
    }).finally(() => {
      this.renewing = undefined
      for (const told of [...this.waiting]) told()
    })
    await this.renewing
    if (this.refusal || Date.now() < this.sweepAfter) return
    this.sweeping ??= this.sweep().catch((e) => this.o.onError(e)).finally(() => { this.sweeping = undefined })
    await this.sweeping
  }

  /** Takes or keeps the leadership `name` (a poller): true when this engine holds it now; never once refused (it has no row). */
  async lead(name: string): Promise<boolean> {
    if (this.refusal) return false
    const rows = await this.renewals.sql`INSERT INTO weir_leaders (name, engine_id, lease_until)
      VALUES (${name}, ${this.id}, clock_timestamp() + ${this.o.leaseMs}::int * interval '1 millisecond')
      ON CONFLICT (name) DO UPDATE SET engine_id = excluded.engine_id, lease_until = excluded.lease_until
        WHERE weir_leaders.engine_id = excluded.engine_id OR weir_leaders.lease_until < clock_timestamp()
      RETURNING engine_id`
    return rows.length === 1
  }

  /**
   * Takes or keeps each of the leaderships `names` in one statement (the alerts' rules, one each):
   * those this engine holds now. On the main pool, not the renewals', so that many of them never
   * queue ahead of the heartbeat.
   */
  async leadAll(names: readonly string[]): Promise<Set<string>> {
    if (this.refusal || names.length === 0) return new Set()
    const rows = await this.db.sql<{ name: string }>`INSERT INTO weir_leaders (name, engine_id, lease_until)
      SELECT n, ${this.id}, clock_timestamp() + ${this.o.leaseMs}::int * interval '1 millisecond' FROM unnest(${[...names]}::text[]) AS n
      ON CONFLICT (name) DO UPDATE SET engine_id = excluded.engine_id, lease_until = excluded.lease_until
        WHERE weir_leaders.engine_id = excluded.engine_id OR weir_leaders.lease_until < clock_timestamp()
      RETURNING name`
    return new Set(rows.map((r) => r.name))
  }

  async resign(name: string): Promise<void> {
    await this.renewals.sql`DELETE FROM weir_leaders WHERE name = ${name} AND engine_id = ${this.id}`
  }

  /**
   * Leaves the cluster cleanly: the row and leaderships go, and with them any claim the runtime did
   * not release (a delivery that outlived the shutdown, a release that failed): once the row is gone
   * no sweep would find those claims by their engine, so they go back to the queue here.
   */
  async leave(): Promise<void> {
    clearInterval(this.timer)
    await Promise.all([this.renewing, this.sweeping])
    const t = this.o.now()
    await this.renewals.transaction(async (tx) => {
      await tx.sql`DELETE FROM weir_leaders WHERE engine_id = ${this.id}`
      // The row first: it waits for a claim of this engine still committing, which the requeue then sees.
      await tx.sql`DELETE FROM weir_engines WHERE id = ${this.id}`
      return requeueClaimsOf(tx, [this.id], t)
    }).then((r) => {
      if (r.gaveUp.length > 0) this.o.onGaveUp(r.gaveUp)
    })
  }

  /** Stops heartbeating without leaving (a dying engine, for tests). */
  abandon(): void {
    clearInterval(this.timer)
  }

  private async renew(): Promise<void> {
    const lease = this.o.leaseMs
    const sent = { mono: performance.now(), wall: Date.now() }
    try {
      const mine = await this.renewals.transaction(async (tx) => {
        const rows = await tx.sql<{ expired: boolean }>`UPDATE weir_engines e SET heartbeat_at = clock_timestamp(), lease_until = clock_timestamp() + ${lease}::int * interval '1 millisecond'
          FROM (SELECT id, lease_until FROM weir_engines WHERE id = ${this.id}) was WHERE e.id = was.id RETURNING was.lease_until < clock_timestamp() AS expired`
        if (rows[0]?.expired) await this.rejoinCheck(tx)
        await tx.sql`UPDATE weir_leaders SET lease_until = clock_timestamp() + ${lease}::int * interval '1 millisecond' WHERE engine_id = ${this.id}`
        return rows.length
      })
      if (mine === 0) {
        const old = this.id
        this.id = newEngineId()
        await this.register(lease)
        this.o.onLost(old, this.id)
      } else this.vouchFrom(sent)
    } catch (e) {
      if (!(e instanceof DefinitionConflictError)) throw e
      this.refuse(e)
    }
  }

  /**
   * This engine's row had expired, not swept yet: renewing it rejoins the cluster as much as a new
   * row would, so it is compared as a join is (under the join lock): an engine with another
   * definition may have joined since. A conflict rolls the renewal back, the row left to the sweep.
   */
  private async rejoinCheck(tx: Queryable): Promise<void> {
    const definitions = this.o.definitions
    if (!definitions) return
    await tx.query(`SELECT pg_advisory_xact_lock(${JOIN_LOCK})`)
    const conflicts = await definitionConflicts(tx, this.id, definitions, this.o.outlines)
    if (conflicts.length > 0) throw new DefinitionConflictError(definitionConflictMessage(conflicts), conflicts)
  }

  /**
   * A live engine runs one of this engine's channels with another definition, so this engine,
   * its lease lost, may not rejoin: trying again at every heartbeat would not change that while
   * the other runs, and a rowless engine must take nothing meanwhile. So the heartbeat stops for
   * good, nothing is vouched for, and the owner is told once, to stop the engine.
   */
  private refuse(conflict: DefinitionConflictError): void {
    clearInterval(this.timer)
    this.vouchedUntil = { mono: 0, wall: 0 }
    this.refusal = new DefinitionConflictError(`this engine's lease ran out (it was frozen or cut off from the database longer than the lease) and it may not rejoin the cluster: ${conflict.message}`,
      conflict.conflicts, { cause: conflict })
    this.o.onRefused(this.refusal)
  }

  /** A renewal (or registration) sent at `sent` was confirmed. */
  private vouchFrom(sent: { mono: number; wall: number }): void {
    const ms = this.o.leaseMs * VOUCHED_SHARE
    this.vouchedUntil = { mono: Math.max(this.vouchedUntil.mono, sent.mono + ms), wall: Math.max(this.vouchedUntil.wall, sent.wall + ms) }
  }

  /**
   * Adds this engine (under its current id) to the engines table, leased for `leaseMs` by the
   * database's clock, with the fingerprints of its channels; refuses (DefinitionConflictError, ERR_STORE, nothing written)
   * when a live engine runs one of them with another definition. Joins take turns under an advisory
   * lock held to the commit, so of two engines joining at once the second sees the first's row.
   */
  private async register(leaseMs: number): Promise<void> {
    const sent = { mono: performance.now(), wall: Date.now() }
    const { definitions, outlines } = this.o
    await this.renewals.transaction(async (tx) => {
      await tx.query(`SELECT pg_advisory_xact_lock(${JOIN_LOCK})`)
      await tx.sql`INSERT INTO weir_engines (id, host, pid, version, lease_until, channels, outlines)
        VALUES (${this.id}, ${hostname()}, ${process.pid}, ${this.o.version}, clock_timestamp() + ${leaseMs}::int * interval '1 millisecond',
          ${definitions ? JSON.stringify(definitions) : null}::jsonb, ${definitions && outlines ? JSON.stringify(outlines) : null}::jsonb)`
      const conflicts = definitions ? await definitionConflicts(tx, this.id, definitions, outlines) : []
      if (conflicts.length > 0) throw new DefinitionConflictError(definitionConflictMessage(conflicts), conflicts)
    })
    this.vouchFrom(sent)
  }

  /**
   * Removes the engines whose lease ran out, frees their leaderships and returns to the queue every
   * claim whose engine has no row: theirs, and any left behind by an engine that is gone otherwise
   * (removed by hand, or by a version of Weir that left claims behind).
   */
  private async sweep(): Promise<void> {
    const t = this.o.now()
    const { n, gaveUp, dead } = await this.db.transaction(async (tx) => {
      const gone = (await tx.sql`DELETE FROM weir_engines WHERE lease_until < clock_timestamp() RETURNING id`).map((r) => r.id as string)
      if (gone.length > 0) await tx.sql`DELETE FROM weir_leaders WHERE engine_id = ANY(${gone}::text[])`
      const orphaned = await requeueOrphanedClaims(tx, t)
      return { n: orphaned.n, gaveUp: orphaned.gaveUp, dead: [...new Set([...gone, ...orphaned.owners])] }
    })
    if (dead.length > 0) this.o.onRequeued(n, dead)
    if (gaveUp.length > 0) this.o.onGaveUp(gaveUp)
  }
}

/**
 * Per channel of `mine` that a live engine runs with another fingerprint, the first such engine to
 * have started, and where the definitions differ when both outlines are known. Engines of an older
 * weir (no fingerprints) are not compared.
 */
async function definitionConflicts(tx: Queryable, self: string, mine: Readonly<Record<string, string>>,
  outlines: Readonly<Record<string, DefinitionOutline>> | undefined): Promise<DefinitionConflict[]> {
  // The outlines are read only for a conflict found, and only the channel's: a join that agrees reads none.
  const live = await tx.sql<{ id: string; host: string; pid: number; channels: Record<string, string> }>`
    SELECT id, host, pid, channels FROM weir_engines
    WHERE id <> ${self} AND lease_until >= clock_timestamp() AND channels IS NOT NULL ORDER BY started_at, id`
  const conflicts: DefinitionConflict[] = []
  for (const [channel, fingerprint] of Object.entries(mine)) {
    const other = live.find((e) => e.channels[channel] !== undefined && e.channels[channel] !== fingerprint)
    if (!other) continue
    const here = outlines?.[channel]
    const [row] = here ? await tx.sql<{ outline: DefinitionOutline | null }>`SELECT outlines -> ${channel}::text AS outline FROM weir_engines WHERE id = ${other.id}` : []
    const differences = here && row?.outline ? outlineDifferences(here, row.outline) : []
    conflicts.push({ channel, id: other.id, host: other.host, pid: other.pid, ...(differences.length > 0 ? { differences } : {}) })
  }
  return conflicts
}

/**
 * Where outline `here` (this engine's) differs from `there` (a live engine's), in pointer order.
 * A part that one has and the other lacks entirely is named once (`/destinations/1`, not each of its
 * values); a value that became a part of values is named by the values inside.
 */
export function outlineDifferences(here: DefinitionOutline, there: DefinitionOutline): DefinitionDifference[] {
  const found = new Map<string, DefinitionDifference['change']>()
  const [hereParts, thereParts] = [partsOf(Object.keys(here)), partsOf(Object.keys(there))]
  for (const [pointer, digest] of Object.entries(here)) {
    if (there[pointer] === undefined) found.set(widestMissing(pointer, thereParts), 'added')
    else if (there[pointer] !== digest) found.set(pointer, 'changed')
  }
  for (const pointer of Object.keys(there)) if (here[pointer] === undefined) found.set(widestMissing(pointer, hereParts), 'removed')
  // A part named whole leaves out what lies inside it that was also found.
  const holding = new Set([...found.keys()].flatMap((p) => enclosing(p)))
  return [...found.keys()].filter((p) => !holding.has(p))
    .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }))
    .map((pointer) => ({ pointer, change: found.get(pointer)! }))
}

/**
 * The parts of the definition that hold `pointer`, outermost first (`/a/b/c`: `/a`, `/a/b`). A loaded
 * file (`files/<path>`) is one value, its path no pointer; a credentials file's pointer starts after its `#`.
 */
function enclosing(pointer: string): string[] {
  if (pointer.startsWith('files/')) return []
  const parts: string[] = []
  const root = pointer.startsWith('/') ? 0 : pointer.indexOf('#') + 1
  for (let cut = pointer.indexOf('/', root + 1); cut !== -1; cut = pointer.indexOf('/', cut + 1)) parts.push(pointer.slice(0, cut))
  return parts
}

/** Every pointer of an outline and every part that holds one: what `widestMissing` looks up. */
const partsOf = (pointers: readonly string[]) => new Set(pointers.flatMap((p) => [p, ...enclosing(p)]))

/** The outermost part of the definition holding `pointer` of which the other outline (its `parts`) has nothing, or `pointer`. */
function widestMissing(pointer: string, parts: ReadonlySet<string>): string {
  return enclosing(pointer).find((part) => !parts.has(part)) ?? pointer
}

function newEngineId(): string {
  return `${hostname()}-${process.pid}-${newMessageId().slice(-6).toLowerCase()}`
}

/**
 * Every engine of the cluster, with its lease, claims and leaderships, and the outlines of the
 * channels live engines run with different definitions (see `EngineStatus.outlines`): one query,
 * whose CTE `e` is evaluated once (it calls clock_timestamp()), so the engines whose outlines are
 * read are the ones it shows live, and the channels those found in conflict.
 */
export async function clusterStatus(db: Db): Promise<EngineStatus[]> {
  const rows = await db.sql`
    WITH e AS (SELECT *, lease_until < clock_timestamp() AS expired, clock_timestamp() - heartbeat_at AS age FROM weir_engines),
    conflicting AS (SELECT c.key AS channel FROM e, jsonb_each_text(e.channels) c WHERE NOT e.expired GROUP BY c.key HAVING count(DISTINCT c.value) > 1)
    SELECT e.id, e.host, e.pid, e.version, extract(epoch FROM e.started_at) * 1000 AS started, extract(epoch FROM e.age) * 1000 AS age, e.expired,
      (SELECT count(*) FROM weir_messages m WHERE m.owner = e.id AND m.status IN ('in-flight', 'retrying'))::int AS claimed,
      coalesce((SELECT array_agg(l.name ORDER BY l.name) FROM weir_leaders l WHERE l.engine_id = e.id), '{}') AS leads, e.channels,
      (SELECT jsonb_object_agg(k.channel, e.outlines -> k.channel) FROM conflicting k WHERE NOT e.expired AND e.outlines -> k.channel IS NOT NULL) AS outlines
    FROM e ORDER BY e.started_at, e.id`
  return rows.map((r) => ({
    id: r.id, host: r.host, pid: r.pid, version: r.version, startedAt: Math.round(Number(r.started)),
    heartbeatAgeMs: Math.max(0, Math.round(Number(r.age))), expired: r.expired, claimed: r.claimed, leads: r.leads, channels: r.channels ?? null,
    ...(r.outlines ? { outlines: r.outlines } : {}),
  }))
}
