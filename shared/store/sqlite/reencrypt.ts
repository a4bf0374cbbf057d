import Database from 'better-sqlite3'
import { isSealedValue, type ContentCipher } from '../encrypted.ts'

/** Where sealed values live, with the field name each was sealed under and how it is stored in its column. */
const COLUMNS = [
  { table: 'message_content', key: 'seq', column: 'body', field: 'body', form: 'json-string' },
  { table: 'message_content', key: 'seq', column: 'attributes', field: 'attributes', form: 'attributes' },
  { table: 'message_status', key: 'seq', column: 'error', field: 'error', form: 'text' },
  { table: 'deliveries', key: 'message_id, destination, part', column: 'last_error', field: 'error', form: 'text' },
  { table: 'deliveries', key: 'message_id, destination, part', column: 'response_excerpt', field: 'excerpt', form: 'text' },
  { table: 'attempts', key: 'rowid', column: 'error', field: 'error', form: 'text' },
  { table: 'attempts', key: 'rowid', column: 'excerpt', field: 'excerpt', form: 'text' },
] as const

type Form = (typeof COLUMNS)[number]['form']
const PREFIX: Record<Form, string> = { 'json-string': '"weir:enc:', attributes: '{"weir:enc":"weir:enc:', text: 'weir:enc:' }

/**
 * A value as stored in its column, sealed again under the cipher's current key; undefined for a
 * value that is not sealed (a clear one the store marked `weir:enc:clear:`): left as it is.
 */
function resealed(value: string, form: Form, field: string, c: ContentCipher): string | undefined {
  const again = (sealed: string | undefined) => (isSealedValue(sealed) ? c.seal(c.open(sealed, field), field) : undefined)
  if (form === 'text') return again(value)
  if (form === 'json-string') {
    const sealed = again(JSON.parse(value) as string)
    return sealed === undefined ? undefined : JSON.stringify(sealed)
  }
  const attrs = JSON.parse(value) as Record<string, string>
  const sealed = again(attrs['weir:enc'])
  return sealed === undefined ? undefined : JSON.stringify({ ...attrs, 'weir:enc': sealed })
}

export interface ReencryptProgress {
  /** Values sealed again so far. */
  values: number
  /** Passes over the tables (the last one found nothing left). */
  passes: number
  /**
   * Values of the last pass that no key of the keyring opens (sealed with a key it no longer
   * holds, or altered): left as they are, and the others sealed again all the same.
   */
  unreadable: number
  /**
   * The WAL was checkpointed into the database and truncated at the end: no page image of a value
   * as an older key sealed it is left in `-wal`. False when a reader of an older snapshot (another
   * process's `weir messages`, `weir backup`) kept it from that until `checkpointWaitMs` ran out.
   */
  walTruncated: boolean
}

/**
 * Checkpoints the WAL into the database and truncates it, without waiting behind a reader: with a
 * busy timeout, a TRUNCATE checkpoint waits for every reader of an older snapshot and holds the
 * engine's writes meanwhile. Tries again every 100 ms (holding nothing between tries) until `waitMs`.
 */
async function truncateWal(db: Database.Database, waitMs: number): Promise<boolean> {
  const until = Date.now() + waitMs
  db.pragma('busy_timeout = 0')
  for (;;) {
    const [cp] = db.pragma('wal_checkpoint(TRUNCATE)') as Array<{ busy: number }>
    if (cp?.busy === 0) return true
    if (Date.now() >= until) return false
    await new Promise((ok) => setTimeout(ok, 100))
  }
}

/**
 * Seals again, under the cipher's current key, every value of the SQLite store `file` that another
 * key sealed: in batches of `batch` rows, each its own short transaction, so a running engine's
 * writes go on between them. Each pass walks every table once along its key (never from the start
 * again). Passes repeat until one finds nothing, and at least until `settleMs` has passed (an
 * engine picks up a new key within a few seconds; what it sealed meanwhile is caught by a later
 * pass). A value no key opens is counted and skipped, not a reason to stop. At the end the WAL is
 * checkpointed and truncated without waiting behind readers; `walTruncated` says whether it was.
 */
export async function reencryptSqlite(file: string, c: ContentCipher, options: { batch?: number; settleMs?: number; checkpointWaitMs?: number; onProgress?: (p: ReencryptProgress) => void } = {}): Promise<ReencryptProgress> {
  const db = new Database(file)
  db.pragma('busy_timeout = 10000')
  db.pragma('secure_delete = ON') // the old ciphertexts are overwritten, not left in free pages
  const batch = options.batch ?? 500
  const until = Date.now() + (options.settleMs ?? 0)
  const current = `weir:enc:v2:${c.keyId}:`
  const progress: ReencryptProgress = { values: 0, passes: 0, unreadable: 0, walTruncated: false }
  try {
    for (;;) {
      let found = 0
      let unreadable = 0
      for (const col of COLUMNS) {
        const keyCols = col.key.split(', ')
        const sealed = `${col.column} LIKE ? ESCAPE '\\' AND ${col.column} NOT LIKE ? ESCAPE '\\'`
        const tail = `ORDER BY ${col.key} LIMIT ?`
        const first = db.prepare(`SELECT ${col.key}, ${col.column} AS v FROM ${col.table} WHERE ${sealed} ${tail}`)
        const next = db.prepare(`SELECT ${col.key}, ${col.column} AS v FROM ${col.table}
          WHERE (${col.key}) > (${keyCols.map(() => '?').join(', ')}) AND ${sealed} ${tail}`)
        const update = db.prepare(`UPDATE ${col.table} SET ${col.column} = ? WHERE ${keyCols.map((k) => `${k} = ?`).join(' AND ')}`)
        const currentPrefix = PREFIX[col.form].replace('weir:enc:', current)
        const like = (p: string) => p.replace(/[\\%_]/g, '\\$&') + '%'
        let after: unknown[] | undefined
        for (;;) {
          const [rows, sealedAgain] = db.transaction((): [number, number] => {
            const params = [like(PREFIX[col.form]), like(currentPrefix), batch]
            const got = (after ? next.all(...after, ...params) : first.all(...params)) as Array<Record<string, unknown> & { v: string }>
            let n = 0
            for (const r of got) {
              let value: string | undefined
              try {
                value = resealed(r.v, col.form, col.field, c)
              } catch {
                unreadable++
                continue
              }
              if (value === undefined) continue
              update.run(value, ...keyCols.map((k) => r[k]))
              n++
            }
            if (got.length > 0) after = keyCols.map((k) => got[got.length - 1]![k])
            return [got.length, n]
          }).immediate()
          found += sealedAgain
          progress.values += sealedAgain
          if (sealedAgain > 0) options.onProgress?.(progress)
          if (rows < batch) break
          await new Promise((ok) => setImmediate(ok))
        }
      }
      progress.passes++
      progress.unreadable = unreadable
      if (found === 0 && Date.now() >= until) break
      await new Promise((ok) => setTimeout(ok, 500))
    }
    progress.walTruncated = await truncateWal(db, options.checkpointWaitMs ?? 2000)
    return progress
  } finally {
    db.close()
  }
}
