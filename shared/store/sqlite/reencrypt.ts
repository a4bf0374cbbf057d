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
}

/**
 * Seals again, under the cipher's current key, every value of the SQLite store `file` that another
 * key sealed: in batches of `batch` rows, each its own short transaction, so a running engine's
 * writes go on between them. Passes repeat until one finds nothing, and at least until `settleMs`
 * has passed (an engine picks up a new key within a few seconds; what it sealed meanwhile is
 * caught by a later pass).
 */
export async function reencryptSqlite(file: string, c: ContentCipher, options: { batch?: number; settleMs?: number; onProgress?: (p: ReencryptProgress) => void } = {}): Promise<ReencryptProgress> {
  const db = new Database(file)
  db.pragma('busy_timeout = 10000')
  db.pragma('secure_delete = ON') // the old ciphertexts are overwritten, not left in free pages
  const batch = options.batch ?? 500
  const until = Date.now() + (options.settleMs ?? 0)
  const current = `weir:enc:v2:${c.keyId}:`
  const progress: ReencryptProgress = { values: 0, passes: 0 }
  try {
    for (;;) {
      let found = 0
      for (const col of COLUMNS) {
        const keyCols = col.key.split(', ')
        const select = db.prepare(`SELECT ${col.key}, ${col.column} AS v FROM ${col.table}
          WHERE ${col.column} LIKE ? ESCAPE '\\' AND ${col.column} NOT LIKE ? ESCAPE '\\' LIMIT ?`)
        const update = db.prepare(`UPDATE ${col.table} SET ${col.column} = ? WHERE ${keyCols.map((k) => `${k} = ?`).join(' AND ')}`)
        const currentPrefix = PREFIX[col.form].replace('weir:enc:', current)
        const like = (p: string) => p.replace(/[\\%_]/g, '\\$&') + '%'
        for (;;) {
          const rows = db.transaction(() => {
            const got = select.all(like(PREFIX[col.form]), like(currentPrefix), batch) as Array<Record<string, unknown> & { v: string }>
            for (const r of got) update.run(resealed(r.v, col.form, col.field, c), ...keyCols.map((k) => r[k]))
            return got.length
          }).immediate()
          found += rows
          progress.values += rows
          if (rows > 0) options.onProgress?.(progress)
          if (rows < batch) break
          await new Promise((ok) => setImmediate(ok))
        }
      }
      progress.passes++
      if (found === 0 && Date.now() >= until) break
      await new Promise((ok) => setTimeout(ok, 500))
    }
    db.pragma('wal_checkpoint(TRUNCATE)')
    return progress
  } finally {
    db.close()
  }
}
