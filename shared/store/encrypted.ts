import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomFillSync } from 'node:crypto'
import type { EmitResult, MessageInput } from '../component.ts'
import { StoreError } from './errors.ts'
import { RETIRED_FILE, keyIdOf, keyringOf, type StoreKeyring } from './keyring.ts'
import type {
  AttemptRecord, ClaimOptions, ClaimedMessage, DeliveryRecord, DeliveryUpdate, EnqueueOptions, FilterRetry, ListFilter, MessageDetail,
  MessageStore, PurgeTarget, ResubmitTarget, StoreFailure, StoredMessage,
} from './types.ts'
import { StoreFailures } from './failures.ts'

/**
 * Marks an encrypted value: `weir:enc:v2:<key id>:<iv>.<tag>.<ciphertext>` (base64); v1 values (no
 * key id) are still read. Every value starting with `weir:enc:` is the store's: a clear value that
 * starts so is stored behind `weir:enc:clear:` (see {@link keepClear}), never taken for a sealed one.
 */
const SEALED = 'weir:enc:'
/** The marks of a sealed value: v2 names its key (`weir:enc:v2:<key id>:…`), v1 does not. */
export const SEALED_V2 = 'weir:enc:v2:'
export const SEALED_V1 = 'weir:enc:v1:'
const SEALED_CLEAR = 'weir:enc:clear:'
/** The attribute holding a message's encrypted attributes. */
const SEALED_ATTRIBUTES = 'weir:enc'
/** Marks a search key stored as its keyed hash. */
const HASHED = 'hmac:'

/**
 * A sealed value the keyring cannot open: sealed with a key it does not hold (`keyId`, the key's
 * public id, when the value names it), or altered. Its message names the field and the key id only.
 */
export class UnreadableValueError extends StoreError {
  readonly keyId: string | undefined
  constructor(message: string, keyId: string | undefined, options: { cause?: unknown } = {}) {
    super(message, options)
    this.keyId = keyId
  }
}

/** AES-256-GCM over message content and HMAC-SHA-256 over search keys, with keys derived (HKDF) from the store keyring. */
export interface ContentCipher {
  seal(text: string, field: string): string
  /** The clear text of a sealed value, with whichever key of the keyring sealed it; any other value as it is. */
  open(text: string, field: string): string
  /** The keyed hash a search key (dedupe key, order key) is stored as: equal keys give equal hashes. */
  hash(channel: string, value: string): string
  /** The keyed hash a value of `options.searchKeys` is stored and searched as: the same in every channel, so a search needs no channel. */
  searchHash(name: string, value: string): string
  /** The id of the key `seal` uses. */
  readonly keyId: string
}

/** Random 96-bit IVs, drawn from a pool filled 4 KiB at a time (one call into the CSPRNG per 341 values, not one per value). */
const ivPool = { bytes: Buffer.alloc(12 * 341), at: 12 * 341 }
function randomIv(): Buffer {
  if (ivPool.at === ivPool.bytes.length) {
    randomFillSync(ivPool.bytes)
    ivPool.at = 0
  }
  const iv = Buffer.from(ivPool.bytes.subarray(ivPool.at, ivPool.at + 12))
  ivPool.at += 12
  return iv
}

const derive = (key: Buffer, info: string) => Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), info, 32))
const contentKeyOf = (key: Buffer) => derive(key, 'weir message content')

/** Whether `v` is a value the store sealed (v1 or v2), not a clear value marked `weir:enc:clear:`. */
export const isSealedValue = (v: unknown): v is string => typeof v === 'string' && (v.startsWith(SEALED_V2) || v.startsWith(SEALED_V1))

/**
 * A clear value as the store keeps it: one that starts like a sealed value (`weir:enc:`) gets
 * `weir:enc:clear:` before it, so that a read returns it as it was written (see {@link openers})
 * instead of trying to decrypt it, or decrypting a ciphertext copied into a clear channel.
 */
const keepClear = <T>(v: T): T => (typeof v === 'string' && v.startsWith(SEALED) ? `${SEALED_CLEAR}${v}` as T : v)

/** The id of the key a sealed value names (v2), or undefined (not sealed, or v1). */
export function sealedKeyId(text: string): string | undefined {
  if (!text.startsWith(SEALED_V2)) return undefined
  return text.slice(SEALED_V2.length, text.indexOf(':', SEALED_V2.length))
}

function openWith(encKey: Buffer, sealed: string, field: string): string {
  const [iv, tag, data] = sealed.split('.')
  const d = createDecipheriv('aes-256-gcm', encKey, Buffer.from(iv ?? '', 'base64'))
  d.setAAD(Buffer.from(field))
  d.setAuthTag(Buffer.from(tag ?? '', 'base64'))
  return Buffer.concat([d.update(Buffer.from(data ?? '', 'base64')), d.final()]).toString('utf8')
}

/** The content cipher of a store key, or of a keyring (after rotations: the retired keys still open what they sealed). */
export function contentCipher(keys: Buffer | StoreKeyring): ContentCipher {
  const ring = Buffer.isBuffer(keys) ? keyringOf(keys) : keys
  const byId = new Map([ring.current, ...ring.retired].map((k) => [keyIdOf(k), contentKeyOf(k)]))
  const keyId = keyIdOf(ring.current)
  const encKey = byId.get(keyId)!
  const macKey = derive(ring.index, 'weir search keys')
  const searchKey = derive(ring.index, 'weir search key values')
  const cannot = (field: string, id?: string, e?: unknown) =>
    new UnreadableValueError(`cannot decrypt a message's ${field}: the store key is not the one it was encrypted with${id ? ` (key ${id})` : ''}, or the value was altered`, id, { cause: e })
  return {
    keyId,
    seal(text, field) {
      const iv = randomIv()
      const c = createCipheriv('aes-256-gcm', encKey, iv)
      c.setAAD(Buffer.from(field))
      const data = Buffer.concat([c.update(text, 'utf8'), c.final()])
      return `${SEALED_V2}${keyId}:${iv.toString('base64')}.${c.getAuthTag().toString('base64')}.${data.toString('base64')}`
    },
    open(text, field) {
      const id = sealedKeyId(text)
      if (id !== undefined) {
        const k = byId.get(id)
        if (!k) throw new UnreadableValueError(`cannot decrypt a message's ${field}: it was encrypted with key ${id}, which is not in the store keyring (the current key or ${RETIRED_FILE})`, id)
        try {
          return openWith(k, text.slice(SEALED_V2.length + id.length + 1), field)
        } catch (e) {
          throw cannot(field, id, e)
        }
      }
      if (!text.startsWith(SEALED_V1)) return text
      for (const k of byId.values()) {
        try {
          return openWith(k, text.slice(SEALED_V1.length), field)
        } catch { /* the next key */ }
      }
      throw cannot(field)
    },
    hash: (channel, value) => HASHED + createHmac('sha256', macKey).update(`${channel}\0${value}`).digest('base64url'),
    searchHash: (name, value) => HASHED + createHmac('sha256', searchKey).update(`${name}\0${value}`).digest('base64url'),
  }
}

export interface EncryptedStoreOptions {
  /**
   * The store key (32 bytes) or keyring, asked for whenever a value is to be encrypted or decrypted
   * (cache it; a new keyring object, after a rotation, makes the store use its current key from then on).
   */
  key: () => Promise<Buffer | StoreKeyring>
  /** Channels whose content is encrypted from now on (`options.encryptContent`); `true`: every channel. */
  channels: ReadonlySet<string> | true
}

type Opt<T> = T | undefined

/** What opening a claimed batch needs from the wrapper (encryptContent). */
interface Opening {
  inner: MessageStore
  cipher: () => Promise<ContentCipher>
  encrypts: (channel: string) => boolean
  /** Forgets a message the wrapper claimed (it is finished). */
  finished: (id: string) => void
  /** Tells the store's listeners ({@link onUnreadable}) of a message sent to error because it cannot be decrypted. */
  unreadable: (m: UnreadableMessage) => void
  release: (ids: string[]) => Promise<void>
}

/**
 * A claimed batch opened one message at a time, since the inner store has marked them all in
 * flight already: a message the keyring cannot open goes to error on its own (kept in the log,
 * never delivered; the store's {@link onUnreadable} listeners are told) and the readable ones are
 * returned; without a key at all, the batch goes back to the queue. Nothing is left in flight with
 * nobody working on it. A clear order key of an encrypted channel (stored before encryption was
 * switched on) is hashed, as new ones are.
 */
async function openClaimed(o: Opening, channel: string, got: ClaimedMessage[]): Promise<ClaimedMessage[]> {
  // The key only when something is sealed or to be hashed: clear values marked as such need none.
  let c: ContentCipher | undefined
  if (got.some((m) => holdsSealed(m, isSealedValue) || (clearOrderKey(m) && o.encrypts(channel)))) {
    try {
      c = await o.cipher()
    } catch (e) {
      await o.release(got.map((m) => m.id)).catch(() => {})
      throw e
    }
  }
  const withKey = openers(async () => c ?? o.cipher())
  const opened = await Promise.all(got.map(async (m): Promise<ClaimedMessage | undefined> => {
    try {
      const open = { ...(await withKey.message(m)), deliveries: await withKey.deliveries(m.deliveries) }
      return clearOrderKey(open) && o.encrypts(channel) ? { ...open, orderKey: c!.hash(channel, open.orderKey!) } : open
    } catch (e) {
      const reason = unreadable(e)
      const failed = await o.inner.fail(m.id, reason).then(() => true, () => o.inner.release([m.id]).then(() => false, () => false))
      o.finished(m.id)
      if (failed) o.unreadable({ id: m.id, channel, keyId: e instanceof UnreadableValueError ? e.keyId : undefined, reason })
      return undefined
    }
  }))
  return opened.filter((m) => m !== undefined)
}

/** A claimed message the store sent to error because it cannot be decrypted: its id, channel, the key id its value names (if any) and the reason stored with it; never content or key material. */
export interface UnreadableMessage { id: string; channel: string; keyId: string | undefined; reason: string }
type UnreadableListener = (m: UnreadableMessage) => void

/** Per encrypted store: its listeners, and the last messages it sent to error unread (replayed to a listener that comes late). */
const unreadableHubs = new WeakMap<object, { listeners: Set<UnreadableListener>; seen: UnreadableMessage[] }>()
const SEEN_KEPT = 1000

/**
 * Calls `listener` for each claimed message `store` (an {@link encryptContent} store) sends to
 * error because no key of the keyring opens it; first for those it already did (the last 1000),
 * since the engine's observers may be attached after its channels started claiming. Returns the
 * unsubscribe; a store that encrypts nothing has no such messages (a no-op). A listener must not
 * throw (one that does is ignored).
 */
export function onUnreadable(store: MessageStore, listener: UnreadableListener): () => void {
  const hub = unreadableHubs.get(store)
  if (!hub) return () => {}
  for (const m of hub.seen) tell(listener, m)
  hub.listeners.add(listener)
  return () => hub.listeners.delete(listener)
}

function tell(listener: UnreadableListener, m: UnreadableMessage): void {
  try {
    listener(m)
  } catch { /* a listener's failure is not the store's */ }
}

function unreadableHub() {
  const hub = { listeners: new Set<UnreadableListener>(), seen: [] as UnreadableMessage[] }
  const emit = (m: UnreadableMessage) => {
    hub.seen.push(m)
    if (hub.seen.length > SEEN_KEPT) hub.seen.shift()
    for (const l of hub.listeners) tell(l, m)
  }
  return { hub, emit }
}

/**
 * Wraps any message store so that the content of the chosen channels is stored encrypted
 * (AES-256-GCM): bodies, attributes, errors, response excerpts and attempt errors are sealed on the
 * way in; dedupe and order keys are stored as keyed hashes, so they still match. Whatever comes out
 * is decrypted, whichever channel and whenever it was written, so turning encryption off keeps the
 * old messages readable. Properties of the wrapped store beyond MessageStore are passed through.
 */
export function encryptContent(inner: MessageStore, options: EncryptedStoreOptions): MessageStore {
  let made: { keys: Buffer | StoreKeyring; cipher: ContentCipher } | undefined
  const cipher = async () => {
    const keys = await options.key()
    if (made?.keys !== keys) made = { keys, cipher: contentCipher(keys) }
    return made.cipher
  }
  /** The channel of each message claimed through this store and not finished: the writes after a claim know only the id. */
  const claimed = new Map<string, string>()
  const encrypts = (channel: Opt<string>) => options.channels === true || channel === undefined || options.channels.has(channel)
  const sealText = async (text: Opt<string>, field: string, channel: Opt<string>) =>
    text === undefined || !encrypts(channel) ? keepClear(text) : (await cipher()).seal(text, field)
  const sealUpdates = (id: string, updates: DeliveryUpdate[]) => Promise.all(updates.map(async (u) => {
    if (!u.attempt) return u
    if (!encrypts(claimed.get(id))) return clearUpdate(u)
    const c = await cipher()
    return withAttemptTexts(u, (text, field) => c.seal(text, field))
  }))
  const finished = (id: string) => claimed.delete(id)
  /** Whether a claimed message of `channel` needs opening: something in it is sealed, or its order key is to be hashed. */
  const toOpen = (channel: string, m: ClaimedMessage) => holdsSealed(m) || (clearOrderKey(m) && encrypts(channel))

  const reports = failureReports(inner)
  const opening: Opening = { inner, cipher, encrypts, finished, unreadable: reports.unreadable, release: (ids) => wrapper.release(ids) }

  // A channel stored in clear costs little more than a wrapper call: its enqueue adds no promise,
  // nothing it writes is rewritten, and what is claimed is not copied unless something in it is
  // sealed (a message stored while encryption was on).
  //
  // An encrypted channel may still hold messages stored before encryption was switched on, with
  // their dedupe and order keys in clear: an enqueue looks its dedupe key up in clear too, and a
  // claimed message's clear order key is hashed, so both generations share one key (order per key
  // and duplicates hold across the switch, after a restart too).
  const wrapper: MessageStore = {
    enqueue(channel: string, input: MessageInput, opts: EnqueueOptions = {}): Promise<EmitResult> {
      if (encrypts(channel)) return cipher().then((c) => inner.enqueue(channel, ...sealEnqueue(c, channel, input, opts)))
      try {
        return inner.enqueue(channel, ...clearEnqueue(input, opts))
      } catch (e) {
        return Promise.reject(e) // an inner store that throws instead of rejecting: rejected, as from an async function
      }
    },
    async claim(channel: string, limit: number, opts?: ClaimOptions): Promise<ClaimedMessage[]> {
      const got = await inner.claim(channel, limit, opts)
      for (const m of got) claimed.set(m.id, channel)
      return got.some((m) => toOpen(channel, m)) ? openClaimed(opening, channel, got) : got
    },
    async recordDelivery(id: string, update: DeliveryUpdate) {
      if (!encrypts(claimed.get(id))) return inner.recordDelivery(id, clearUpdate(update))
      const [sealed] = await sealUpdates(id, [update])
      return inner.recordDelivery(id, sealed!)
    },
    async complete(id, status, updates = [], error) {
      const channel = claimed.get(id)
      if (encrypts(channel)) await inner.complete(id, status, await sealUpdates(id, updates), await sealText(error, 'error', channel))
      else await inner.complete(id, status, updates.map(clearUpdate), keepClear(error))
      finished(id)
    },
    async fail(id: string, error: string) {
      await inner.fail(id, (await sealText(error, 'error', claimed.get(id)))!)
      finished(id)
    },
    async release(ids: string[]) {
      await inner.release(ids)
      for (const id of ids) finished(id)
    },
    watchFailures: reports.watchFailures,
    ...passThrough(inner),
    ...lenientReads(inner, cipher),
  }
  // What the wrapped store offers beyond MessageStore (the PostgreSQL store's pool, diagnostics) stays reachable.
  const store = new Proxy(wrapper, { get: (target, p) => (p in target ? Reflect.get(target, p) : Reflect.get(inner, p, inner)) })
  unreadableHubs.set(store, reports.hub)
  return store
}

/**
 * Where a message no key opens is reported: the hub `onUnreadable` listens to, and the failures its
 * channel counts (`watchFailures`: this store's own, and the inner store's, which recovery gave up on).
 */
function failureReports(inner: MessageStore) {
  const { hub, emit } = unreadableHub()
  const failures = new StoreFailures()
  return {
    hub,
    unreadable(m: UnreadableMessage): void {
      emit(m)
      failures.add({ id: m.id, channel: m.channel, cause: 'unreadable' })
    },
    watchFailures(channel: string, listener: (f: StoreFailure) => void): () => void {
      const own = failures.watch(channel, listener)
      const theirs = inner.watchFailures?.(channel, listener)
      return () => { own(); theirs?.() }
    },
  }
}

/**
 * `get`, `list` and `latestErrors`, decrypted; a message no key of the keyring opens is still shown,
 * with its metadata and why (see unreadableView). `latestErrors` is defined here whenever the inner
 * store has it: otherwise the wrapper would hand out the inner store's sealed errors.
 */
function lenientReads(inner: MessageStore, cipher: () => Promise<ContentCipher>): Pick<MessageStore, 'get' | 'list' | 'latestErrors'> {
  const reader = openers(cipher)
  const lenient = openers(cipher, (e) => placeholder(e))
  return {
    async get(id: string): Promise<MessageDetail | undefined> {
      const d = await inner.get(id)
      return d && { message: await reader.message(d.message).catch((e) => unreadableView(d.message, e)), deliveries: await lenient.deliveries(d.deliveries), attempts: await lenient.attempts(d.attempts) }
    },
    async list(filter?: ListFilter): Promise<StoredMessage[]> {
      const found = filter?.key ? await listByKey(inner, filter, filter.key, await cipher()) : await inner.list(filter)
      return Promise.all(found.map((m) => reader.message(m).catch((e) => unreadableView(m, e))))
    },
    ...(inner.latestErrors ? {
      latestErrors: async (ids: readonly string[]) =>
        Promise.all((await inner.latestErrors!(ids)).map(async (e) => ({ ...e, error: await lenient.text(e.error, 'error') }))),
    } : {}),
  }
}

/** The store's methods that carry no message content: the wrapped store's own. */
function passThrough(inner: MessageStore) {
  return {
    recordFilterRetry: (id: string, retry: FilterRetry | null) => inner.recordFilterRetry(id, retry),
    resubmit: (target: ResubmitTarget) => inner.resubmit(target),
    resubmitPreview: (ids: string[]) => inner.resubmitPreview(ids),
    audit: (entry: Parameters<MessageStore['audit']>[0]) => inner.audit(entry),
    auditLog: (options?: Parameters<MessageStore['auditLog']>[0]) => inner.auditLog(options),
    purge: (target: PurgeTarget) => inner.purge(target),
    countPurgeable: (target: Parameters<MessageStore['countPurgeable']>[0]) => inner.countPurgeable(target),
    stats: (channel?: string) => inner.stats(channel),
    pending: (channel: string) => inner.pending(channel),
    oldestPending: (channel?: string) => inner.oldestPending(channel),
    size: () => inner.size(),
    refreshPending: (channel?: string) => inner.refreshPending(channel),
    ...(inner.leadership ? { leadership: inner.leadership } : {}),
    getState: <T = unknown>(channel: string, component: string, key: string) => inner.getState<T>(channel, component, key),
    setState: (channel: string, component: string, key: string, value: unknown) => inner.setState(channel, component, key, value),
    swapState: (channel: string, component: string, key: string, expected: unknown, value: unknown) => inner.swapState(channel, component, key, expected, value),
    close: () => inner.close(),
  } satisfies Partial<MessageStore>
}

/** A message and its enqueue options as an encrypted channel stores them: content sealed, keys hashed (they still match). */
function sealEnqueue(c: ContentCipher, channel: string, input: MessageInput, opts: EnqueueOptions): [MessageInput, EnqueueOptions] {
  const sealed: MessageInput = {
    ...input,
    body: c.seal(JSON.stringify(input.body ?? null), 'body'),
    contentType: input.contentType ?? (typeof input.body === 'string' ? 'text/plain' : 'application/json'),
    // No attributes: nothing to hide, and a seal saved on the hot path.
    attributes: input.attributes && Object.keys(input.attributes).length > 0 ? { [SEALED_ATTRIBUTES]: c.seal(JSON.stringify(input.attributes), 'attributes') } : {},
    ...(input.dedupeKey !== undefined ? { dedupeKey: c.hash(channel, input.dedupeKey) } : {}),
  }
  return [sealed, {
    ...opts,
    ...(input.dedupeKey !== undefined ? { clearDedupeKey: input.dedupeKey } : {}),
    ...(opts.orderKey !== undefined ? { orderKey: c.hash(channel, opts.orderKey) } : {}),
    ...(opts.searchKeys !== undefined ? { searchKeys: hashSearchKeys(c, opts.searchKeys) } : {}),
    ...(opts.error !== undefined ? { error: c.seal(opts.error, 'error') } : {}),
  }]
}

/** A message and its enqueue options as a channel stored in clear stores them: as they are, but for a value that starts like a sealed one ({@link keepClear}). */
function clearEnqueue(input: MessageInput, opts: EnqueueOptions): [MessageInput, EnqueueOptions] {
  const attributes = input.attributes
  if (!isSealed(input.body) && !isSealed(attributes?.[SEALED_ATTRIBUTES]) && !isSealed(opts.error)) return [input, opts]
  return [
    { ...input, body: keepClear(input.body), ...(attributes && Object.hasOwn(attributes, SEALED_ATTRIBUTES) ? { attributes: { ...attributes, [SEALED_ATTRIBUTES]: keepClear(attributes[SEALED_ATTRIBUTES]!) } } : {}) },
    opts.error === undefined ? opts : { ...opts, error: keepClear(opts.error) },
  ]
}

/** A delivery update with its attempt's error and response excerpt (those it has) replaced by `f` of them. */
function withAttemptTexts(u: DeliveryUpdate, f: (text: string, field: 'error' | 'excerpt') => string): DeliveryUpdate {
  if (!u.attempt) return u
  const { error, excerpt } = u.attempt
  return { ...u, attempt: { ...u.attempt, ...(error !== undefined ? { error: f(error, 'error') } : {}), ...(excerpt !== undefined ? { excerpt: f(excerpt, 'excerpt') } : {}) } }
}

/** A delivery update of a channel stored in clear: as it is, but for a text that starts like a sealed value. */
const clearUpdate = (u: DeliveryUpdate): DeliveryUpdate => (isSealed(u.attempt?.error) || isSealed(u.attempt?.excerpt) ? withAttemptTexts(u, keepClear) : u)

const hashSearchKeys = (c: ContentCipher, keys: Record<string, string[]>) =>
  Object.fromEntries(Object.entries(keys).map(([name, values]) => [name, values.map((v) => c.searchHash(name, v))]))

/**
 * A search by key finds both the messages stored in clear and those of encrypted channels (stored
 * with the value's keyed hash): whether a channel was encrypted when a message was stored is not known here.
 */
async function listByKey(inner: MessageStore, filter: ListFilter, { name, value }: { name: string; value: string }, c: ContentCipher): Promise<StoredMessage[]> {
  const [clear, hashed] = await Promise.all([inner.list(filter), inner.list({ ...filter, key: { name, value: c.searchHash(name, value) } })])
  const asc = filter.order === 'asc'
  return [...clear, ...hashed].sort((a, b) => (asc ? a.seq - b.seq : b.seq - a.seq)).slice(0, filter.limit ?? 100)
}

/** Whether a value is the store's (starts with `weir:enc:`): sealed, or clear and marked so ({@link keepClear}). */
const isSealed = (v: unknown): v is string => typeof v === 'string' && v.startsWith(SEALED)

/** Whether a message's body, attributes or reason (error, filteredBy) was stored sealed (`is`: or marked clear, the default). */
const messageSealed = (m: StoredMessage, is = isSealed) => is(m.body) || is(m.attributes[SEALED_ATTRIBUTES]) || is(m.error) || is(m.filteredBy)
/** Whether a delivery record's error or response excerpt was stored sealed (or marked clear). */
const deliverySealed = (d: DeliveryRecord, is = isSealed) => is(d.lastError) || is(d.responseExcerpt)
/** Whether anything of a claimed message was stored sealed (`is`: or marked clear, the default): what `openers` would open. */
const holdsSealed = (m: ClaimedMessage, is = isSealed) => messageSealed(m, is) || m.deliveries.some((d) => deliverySealed(d, is))
/** Whether a message's order key is in clear (stored while its channel was not encrypted). */
const clearOrderKey = (m: StoredMessage) => m.orderKey !== undefined && !m.orderKey.startsWith(HASHED)

/**
 * Why a claimed message that could not be opened is in error: the store's own reason (which field,
 * which key id: a public name), never the decrypted text or a key.
 */
function unreadable(e: unknown): string {
  return e instanceof StoreError ? e.message : 'cannot decrypt a message: a decrypted value is not what was sealed (it was altered)'
}

/** What a read shows instead of a value no key of the keyring opens: why, with the key's public id. */
const placeholder = (e: UnreadableValueError) => `(cannot be decrypted${e.keyId ? `: sealed with key ${e.keyId}` : ''}) ${e.message}`

/**
 * A message as a read (list, get) shows it when a value of it cannot be decrypted: its id, channel,
 * status and times as stored, the body replaced by the reason, no attributes, the error the reason
 * (and no filteredBy: still sealed).
 * Any other failure (no key can be loaded at all) is thrown, as it concerns every message.
 */
function unreadableView<M extends StoredMessage>(m: M, e: unknown): M {
  if (!(e instanceof UnreadableValueError)) throw e
  const why = placeholder(e)
  const { filteredBy: _sealed, ...rest } = m
  return { ...rest, body: why, contentType: 'text/plain', attributes: {}, error: why } as M
}

/**
 * Decrypts what comes out of the store; a value that was never encrypted is returned as it is (a
 * clear one marked `weir:enc:clear:` without its mark), and no key is asked for. `unreadableAs`:
 * what a value no key opens reads as, instead of failing the read.
 */
function openers(cipher: () => Promise<ContentCipher>, unreadableAs?: (e: UnreadableValueError) => string) {
  const openOne = async <T>(v: T, field: string): Promise<T> =>
    isSealedValue(v) ? ((await cipher()).open(v, field) as T) : isSealed(v) && v.startsWith(SEALED_CLEAR) ? (v.slice(SEALED_CLEAR.length) as T) : v
  // With `unreadableAs`, a value no key opens reads as what it gives (a read that shows the rest).
  const open = !unreadableAs ? openOne : <T>(v: T, field: string): Promise<T> =>
    openOne(v, field).catch((e) => (e instanceof UnreadableValueError ? (unreadableAs(e) as T) : Promise.reject(e)))
  return {
    /** One sealed (or clear) text. */
    text: (v: string, field: string): Promise<string> => open(v, field),
    async message<M extends StoredMessage>(m: M): Promise<M> {
      const sealedAttributes = m.attributes[SEALED_ATTRIBUTES]
      if (!messageSealed(m)) return m
      return {
        ...m,
        body: isSealedValue(m.body) ? JSON.parse(await open(m.body, 'body')) : await open(m.body, 'body'),
        attributes: isSealedValue(sealedAttributes) ? JSON.parse(await open(sealedAttributes, 'attributes'))
          : isSealed(sealedAttributes) ? { ...m.attributes, [SEALED_ATTRIBUTES]: await open(sealedAttributes, 'attributes') } : m.attributes,
        ...(m.error !== undefined ? { error: await open(m.error, 'error') } : {}),
        // Sealed as the reason of an error is (`complete` seals either as its `error`).
        ...(m.filteredBy !== undefined ? { filteredBy: await open(m.filteredBy, 'error') } : {}),
      }
    },
    deliveries: async <D extends readonly DeliveryRecord[]>(ds: D): Promise<D> => !ds.some((d) => deliverySealed(d)) ? ds : Promise.all(ds.map(async (d) => ({
      ...d,
      ...(d.lastError !== undefined ? { lastError: await open(d.lastError, 'error') } : {}),
      ...(d.responseExcerpt !== undefined ? { responseExcerpt: await open(d.responseExcerpt, 'excerpt') } : {}),
    }))) as unknown as D,
    attempts: async <A extends readonly AttemptRecord[]>(as: A): Promise<A> => !as.some((a) => isSealed(a.error) || isSealed(a.excerpt)) ? as : Promise.all(as.map(async (a) => ({
      ...a,
      ...(a.error !== undefined ? { error: await open(a.error, 'error') } : {}),
      ...(a.excerpt !== undefined ? { excerpt: await open(a.excerpt, 'excerpt') } : {}),
    }))) as unknown as A,
  }
}
