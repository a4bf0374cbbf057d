// A channel whose content is stored encrypted (options.encryptContent, or `weir run
// --encrypt-content` for every channel) writes no free text about a message's failure to the log:
// an API's error answer often echoes the request (a patient's name, MRN, diagnosis). The log line
// says the error code, the destination or filter, the HTTP status, the attempt and the message id;
// the full reason stays in the (encrypted) message log. A channel stored in clear logs the reason.
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import type { ComponentDefinition } from '../../shared/component.ts'
import httpDestination from '../../components/destinations/http.ts'
import { errorCodes } from '../../shared/errors.ts'
import { createHttpClient } from '../../shared/http/index.ts'
import type { HttpClient } from '../../shared/http/types.ts'
import { createLogger } from '../../shared/log/index.ts'
import { encryptContent } from '../../shared/store/encrypted.ts'
import { openSqliteStore, type MessageStore } from '../../shared/store/index.ts'
import { startChannel, type ChannelHandle } from '../../engine/runtime/index.ts'
import { channel, destination, feedSource, filter, startApi, tempDir, until } from '../runtime/_helpers.ts'

const MRN = 'MRN-ERR-400-7731'
const NAME = 'Errorpatientname'

interface Fixture {
  dir: Awaited<ReturnType<typeof tempDir>>
  store: MessageStore
  api: Awaited<ReturnType<typeof startApi>>
  http: HttpClient
  lines: string[]
  handles: ChannelHandle[]
}
const fx = {} as Fixture

beforeEach(async () => {
  fx.dir = await tempDir('weir-log-lines-')
  // As `weir run` opens it: the store seals the content of the channels named `enc…` (or all, `channels: true`).
  fx.store = encryptContent(openSqliteStore({ dataDir: fx.dir.path }), { key: async () => KEY, channels: new Set(['enc']) })
  // An API that refuses the patient with an answer echoing the request, as FHIR servers do.
  fx.api = await startApi(({ body }) => ({ status: (body as { status?: number }).status ?? 400, body: JSON.stringify({ error: 'bad', echo: JSON.stringify(body) }) }))
  fx.http = createHttpClient()
  fx.lines = []
  fx.handles = []
})
afterEach(async () => {
  for (const h of fx.handles.splice(0)) await h.stop({ timeoutMs: 500 })
  await fx.http.close()
  await fx.api.close()
  await fx.store.close()
  await fx.dir.remove()
})
const KEY = randomBytes(32)

/** The built-in http destination, configured as loading would default it. */
const httpTo = (url: string, retry = { maxAttempts: 2, initialDelayMs: 5, maxDelayMs: 10, maxElapsedMs: 60_000 }) =>
  destination('api', url, { definition: httpDestination as ComponentDefinition<'destination'>, config: { url, method: 'POST', headers: {}, secretHeaders: {}, timeoutMs: 5000, successStatuses: ['2xx'] }, retry })

async function start(name: string, options: Record<string, unknown> = {}, extra: { encrypt?: ReadonlySet<string> | true; filters?: ComponentDefinition<'filter'>[] } = {}) {
  const source = feedSource()
  const log = createLogger({ pretty: false, level: 'debug', destination: { write: (l: string) => { fx.lines.push(l) } } as NodeJS.WritableStream })
  const h = await startChannel(channel({ name, dir: fx.dir.path, source: source.definition, destinations: [httpTo(`${fx.api.url}/api/patient`)], options, ...(extra.filters ? { filters: extra.filters } : {}) }),
    { store: fx.store, log, dataDir: fx.dir.path, http: fx.http, ...(extra.encrypt ? { encrypt: extra.encrypt } : {}) })
  fx.handles.push(h)
  return { h, source }
}

const patient = (status?: number) => ({ mrn: MRN, name: NAME, diagnosis: 'E11.9', ...(status ? { status } : {}) })
const logged = () => fx.lines.map((l) => JSON.parse(l) as Record<string, unknown>)
const inError = () => logged().find((l) => l.msg !== undefined && String(l.msg).startsWith('message in error'))

describe('log lines about a failed message of an encrypted channel', () => {
  it('a 400 echoing the body: the MRN is in no log line; the line says code, destination, status, attempt and id; the message log keeps the reason', async () => {
    const { h, source } = await start('enc', { encryptContent: true })
    const { id } = await source.emit(patient())
    await until(() => h.counters().errors === 1)
    const all = fx.lines.join('')
    expect(all).not.toContain(MRN)
    expect(all).not.toContain(NAME)
    expect(inError()).toMatchObject({ level: 50, message: id, code: 'ERR_HTTP_STATUS', destination: 'api', status: 400, attempt: 1, msg: `message in error (details encrypted in the message log: weir messages show ${id})` })
    expect(inError()).not.toHaveProperty('err')
    const stored = await fx.store.get(id)
    expect(stored?.message.error).toContain(MRN)
    expect(stored?.message.error).toContain('answered 400')
  })

  it('a 503 retried until the budget is spent: neither the retry lines nor the final line hold the MRN', async () => {
    const { h, source } = await start('enc', { encryptContent: true })
    const { id } = await source.emit(patient(503))
    await until(() => h.counters().errors === 1)
    const all = fx.lines.join('')
    expect(all).not.toContain(MRN)
    expect(all).not.toContain(NAME)
    const retrying = logged().find((l) => String(l.msg).startsWith('delivery failed; retrying'))
    expect(retrying).toMatchObject({ message: id, code: 'ERR_HTTP_STATUS', destination: 'api', status: 503, attempt: 1 })
    expect(inError()).toMatchObject({ message: id, code: 'ERR_HTTP_STATUS', destination: 'api', status: 503, attempt: 2 })
    expect((await fx.store.get(id))?.message.error).toContain(MRN)
  })

  it('every channel encrypted (weir run --encrypt-content): a channel without the option logs no MRN either', async () => {
    await fx.store.close()
    fx.store = encryptContent(openSqliteStore({ dataDir: fx.dir.path }), { key: async () => KEY, channels: true })
    const { h, source } = await start('other', {}, { encrypt: true })
    const { id } = await source.emit(patient())
    await until(() => h.counters().errors === 1)
    expect(fx.lines.join('')).not.toContain(MRN)
    expect(inError()).toMatchObject({ message: id, code: 'ERR_HTTP_STATUS', status: 400 })
    expect((await fx.store.get(id))?.message.error).toContain(MRN)
  })

  it('a filter failing with the content in its error: the retry and error lines say the filter and the code, not the text', async () => {
    let n = 0
    const failing = filter((m: { body: { mrn: string } }) => {
      n++
      throw new errorCodes.ERR_HTTP_NETWORK(`lookup of ${m.body.mrn} failed`)
    })
    const { h, source } = await start('enc', { encryptContent: true }, { filters: [failing] })
    const { id } = await source.emit(patient())
    await until(() => h.counters().errors === 1)
    expect(n).toBe(2)
    expect(fx.lines.join('')).not.toContain(MRN)
    expect(logged().find((l) => String(l.msg).startsWith('filter failed; retrying'))).toMatchObject({ message: id, code: 'ERR_HTTP_NETWORK', filter: 0, attempt: 1 })
    expect(inError()).toMatchObject({ message: id, code: 'ERR_HTTP_NETWORK', filter: 0 })
    expect((await fx.store.get(id))?.message.error).toContain(MRN)
  })

  it('an order key that cannot be computed: the error line has no expression output', async () => {
    const { h, source } = await start('enc', { encryptContent: true, orderBy: '$error("no key for " & mrn)' })
    const { id } = await source.emit(patient())
    await until(() => h.counters().errors === 1)
    expect(fx.lines.join('')).not.toContain(MRN)
    expect(inError()).toMatchObject({ message: id, option: 'orderBy' })
    expect((await fx.store.get(id))?.message.error).toContain(MRN)
  })

  it('onError "stop": the channel\'s stop reason holds no content either', async () => {
    const { h, source } = await start('enc', { encryptContent: true, onError: 'stop' })
    const { id } = await source.emit(patient())
    const outcome = await h.stopped
    expect(outcome.error?.message).not.toContain(MRN)
    expect(outcome.error?.message).toContain(id)
    expect(fx.lines.join('')).not.toContain(MRN)
  })
})

describe('log lines about a failed message of a channel stored in clear', () => {
  it('still quote the reason', async () => {
    const { h, source } = await start('clear')
    const { id } = await source.emit(patient())
    await until(() => h.counters().errors === 1)
    const line = inError()!
    expect(line).toMatchObject({ message: id, msg: 'message in error' })
    expect(String(line.err)).toContain(MRN)
    expect(String(line.err)).toContain('answered 400')
  })
})
