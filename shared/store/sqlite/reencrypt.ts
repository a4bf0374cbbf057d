import Database from 'better-sqlite3'
import type { ContentCipher } from '../encrypted.ts'

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

/** A value as stored in its column, sealed again under the cipher's current key. */
function resealed(value: string, form: Form, field: string, c: ContentCipher): string {
  if (form === 'text') return c.seal(c.open(value, field), field)
  if (form === 'json-string') return JSON.stringify(c.seal(c.open(JSON.parse(value) as string, field), field))
  const attrs = JSON.parse(value) as Record<string, string>
  return JSON.stringify({ ...attrs, 'weir:enc': c.seal(c.open(attrs['weir:enc']!, field), field) })
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
}

/**
 * Seals again, under the cipher's current key, every value of the SQLite store `file` that another
 * key sealed: in batches of `batch` rows, each its own short transaction, so a running engine's
 * writes go on between them. Each pass walks every table once along its key (never from the start
 * again). Passes repeat until one finds nothing, and at least until `settleMs` has passed (an
 * engine picks up a new key within a few seconds; what it sealed meanwhile is caught by a later
 * pass). A value no key opens is counted and skipped, not a reason to stop.
 */
export async function reencryptSqlite(file: string, c: ContentCipher, options: { batch?: number; settleMs?: number; onProgress?: (p: ReencryptProgress) => void } = {}): Promise<ReencryptProgress> {
  const db = new Database(file)
  db.pragma('busy_timeout = 10000')
  db.pragma('secure_delete = ON') // the old ciphertexts are overwritten, not left in free pages
  const batch = options.batch ?? 500
  const until = Date.now() + (options.settleMs ?? 0)
  const current = `weir:enc:v2:${c.keyId}:`
  const progress: ReencryptProgress = { values: 0, passes: 0, unreadable: 0 }
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
              let value: string
              try {
                value = resealed(r.v, col.form, col.field, c)
              } catch {
                unreadable++
                continue
              }
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
    db.pragma('wal_checkpoint(TRUNCATE)')
    return progress
  } finally {
    db.close()
  }
}
