// A value the store sealed is marked `weir:enc:v2:<key id>:…`. A clear value that happens to start
// with `weir:enc:` (a body, an attribute, an error, a server's response excerpt) must read back as
// it was written: never taken for a sealed value (a read that fails, or worse, one that decrypts a
// ciphertext someone copied into a clear channel and shows its clear text).
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { contentCipher, encryptContent } from '../../shared/store/encrypted.ts'
import { openSqliteStore, type MessageStore } from '../../shared/store/index.ts'
import { reencryptSqlite } from '../../shared/store/sqlite/reencrypt.ts'
import { tempDir } from '../runtime/_helpers.ts'

let dir: Awaited<ReturnType<typeof tempDir>>
beforeEach(async () => {
  dir = await tempDir('weir-sealed-marker-')
})
afterEach(async () => {
  await dir.remove()
})

const key = randomBytes(32)
/** A ciphertext of this store's key, as someone who saw the database (or a backup) could copy it. */
const copiedCiphertext = contentCipher(key).seal(JSON.stringify('SECRET-NOTE-OF-ANOTHER-CHANNEL'), 'body')
const LOOKALIKES = ['weir:enc:hello', 'weir:enc:v1:AAAA.BBBB.CCCC', 'weir:enc:v2:0123456789ab:AAAA.BBBB.CCCC', 'weir:enc:clear:x', copiedCiphertext]

function storeIn(data: string, channels: ReadonlySet<string> | true, k: Buffer | Parameters<typeof contentCipher>[0] = key): MessageStore {
  return encryptContent(openSqliteStore({ dataDir: data }), { key: async () => k, channels })
}

/** Stores `text` as a message's body, attribute, error and response excerpt in channel `c`; returns the id. */
async function storeEverywhere(store: MessageStore, text: string): Promise<string> {
  const { id } = await store.enqueue('c', { body: text, attributes: { 'weir:enc': text, note: text } })
  const [claimed] = await store.claim('c', 1)
  expect(claimed?.body).toBe(text) // what a destination is given
  expect(claimed?.attributes).toEqual({ 'weir:enc': text, note: text })
  await store.recordDelivery(id, { destination: 'api', part: 0, status: 'retrying', attempt: { startedAt: 1, endedAt: 2, outcome: 'retryable', error: text, excerpt: text } })
  await store.complete(id, 'error', [{ destination: 'api', part: 0, status: 'error', attempt: { startedAt: 3, endedAt: 4, outcome: 'permanent', error: text, excerpt: text } }], text)
  return id
}

async function expectReadBack(store: MessageStore, id: string, text: string): Promise<void> {
  const d = await store.get(id)
  expect(d?.message.body).toBe(text)
  expect(d?.message.attributes).toEqual({ 'weir:enc': text, note: text })
  expect(d?.message.error).toBe(text)
  expect(d?.deliveries.map((x) => [x.lastError, x.responseExcerpt])).toEqual([[text, text]])
  expect(d?.attempts.map((a) => [a.error, a.excerpt])).toEqual([[text, text], [text, text]])
  expect((await store.list({ channel: 'c' })).find((m) => m.id === id)?.body).toBe(text)
}

describe('a clear value starting with weir:enc:', () => {
  for (const [name, channels] of [['in a channel stored in clear', new Set<string>()], ['in an encrypted channel', true]] as const) {
    it(`reads back as written ${name}`, async () => {
      const data = join(dir.path, 'data')
      const store = storeIn(data, channels)
      try {
        for (const text of LOOKALIKES) await expectReadBack(store, await storeEverywhere(store, text), text)
      } finally {
        await store.close()
      }
    })
  }

  it('is left as it is by a key rotation, and still reads back as written after it', async () => {
    const data = join(dir.path, 'data')
    const inner = openSqliteStore({ dataDir: data })
    const store = encryptContent(inner, { key: async () => key, channels: new Set() })
    const ids: string[] = []
    try {
      for (const text of LOOKALIKES) ids.push(await storeEverywhere(store, text))
      const sealed = await encryptContent(inner, { key: async () => key, channels: true }).enqueue('c', { body: { mrn: 'MRN-SEALED' } })
      ids.push(sealed.id)
    } finally {
      await store.close()
    }
    const next = { current: randomBytes(32), retired: [key], index: key }
    const done = await reencryptSqlite(join(data, 'weir.db'), contentCipher(next))
    expect([done.values, done.unreadable]).toEqual([1, 0]) // the one sealed body, nothing else touched or counted
    const after = storeIn(data, new Set(), next)
    try {
      for (const [i, text] of LOOKALIKES.entries()) await expectReadBack(after, ids[i]!, text)
      expect((await after.get(ids[LOOKALIKES.length]!))?.message.body).toEqual({ mrn: 'MRN-SEALED' })
    } finally {
      await after.close()
    }
  })
})

it('a store written before clear values were marked still reads: sealed values open, a clear "weir:enc:…" that is not sealed reads as it is', async () => {
  const data = join(dir.path, 'data')
  const inner = openSqliteStore({ dataDir: data })
  // As an earlier Weir stored them: a sealed body, and a clear one starting with the prefix, unmarked.
  const sealed = await encryptContent(inner, { key: async () => key, channels: true }).enqueue('c', { body: { mrn: 'MRN-OLD' }, attributes: { ward: 'W1' } })
  const clear = await inner.enqueue('c', { body: 'weir:enc:hello', attributes: { note: 'weir:enc:hello' } })
  await inner.close()
  const store = storeIn(data, new Set())
  try {
    expect((await store.get(sealed.id))?.message).toMatchObject({ body: { mrn: 'MRN-OLD' }, attributes: { ward: 'W1' } })
    expect((await store.get(clear.id))?.message).toMatchObject({ body: 'weir:enc:hello', attributes: { note: 'weir:enc:hello' } })
  } finally {
    await store.close()
  }
})
