import Database from 'better-sqlite3'
import { existsSync } from 'node:fs'
import { SEALED_V1, SEALED_V2 } from '../encrypted.ts'

/** What the store holds sealed: how many messages have a sealed body, and the ids of the keys they name (`v1`: an older value without one), most used first, with their counts. */
export interface SealedSummary { messages: number; keyIds: string[]; counts: number[] }

/**
 * The sealed message bodies of the SQLite store `file` (a body is sealed whenever its message was
 * stored encrypted; it is stored as a JSON string `"weir:enc:v2:<key id>:…"`), counted by key id.
 * Undefined when there is no store (or not yet a table of messages). One scan of the bodies: asked
 * only when a store key is about to be made, or (`pending`: only the messages still to be processed)
 * when an engine starts; never on the hot path.
 */
export function sealedInSqlite(file: string, options: { pending?: boolean } = {}): SealedSummary | undefined {
  if (!existsSync(file)) return undefined
  const db = new Database(file, { fileMustExist: true })
  try {
    db.pragma('busy_timeout = 10000')
    // The key id as sealedKeyId reads it: from after the v2 mark to the next colon (the body is a JSON string: a quote first).
    const at = SEALED_V2.length + 2
    const rows = db.prepare(`SELECT CASE WHEN body GLOB '"${SEALED_V2}*' THEN substr(body, ${at}, instr(substr(body, ${at}), ':') - 1) ELSE 'v1' END AS id, count(*) AS n
      FROM message_content ${options.pending ? `JOIN message_status USING (seq) WHERE status IN ('queued', 'in-flight', 'retrying') AND` : 'WHERE'}
      (body GLOB '"${SEALED_V2}*' OR body GLOB '"${SEALED_V1}*') GROUP BY 1 ORDER BY 2 DESC`).all() as Array<{ id: string; n: number }>
    return { messages: rows.reduce((sum, r) => sum + r.n, 0), keyIds: rows.map((r) => r.id), counts: rows.map((r) => r.n) }
  } catch (e) {
    if (/no such table/.test((e as Error).message)) return undefined
    throw e
  } finally {
    db.close()
  }
}
