// Stores made at an earlier schema and opened by this weir, for the tests of a migration: no tests here.
import Database from 'better-sqlite3'
import { join } from 'node:path'
import { expect } from 'vitest'
import { openPostgresStore, openSqliteStore, type MessageStore } from '../../shared/store/index.ts'
import { openDb, type Queryable } from '../../shared/store/postgres/db.ts'
import { migrations as pgMigrations } from '../../shared/store/postgres/migrations.ts'
import { migrations as sqliteMigrations } from '../../shared/store/sqlite/migrations.ts'
import { tempDir } from '../runtime/_helpers.ts'
import type { EmbeddedPostgresFixture } from '../_postgres.ts'

/**
 * A SQLite store made at schema `version` (the first `version` migrations) holding what `seed`
 * writes, as an earlier weir left it; `check` runs on it opened by its owner, which migrates it.
 * Then the database is at the latest schema, and `after` may look at the directory before it goes.
 */
export async function fromSqliteSchema(version: number, seed: (db: Database.Database) => void, check: (store: MessageStore) => Promise<void>, after?: (dir: string) => Promise<void>): Promise<void> {
  const dir = await tempDir('weir-migration-')
  try {
    const db = new Database(join(dir.path, 'weir.db'))
    for (const m of sqliteMigrations.slice(0, version)) m(db)
    db.pragma(`user_version = ${version}`)
    seed(db)
    db.close()
    const store = openSqliteStore({ dataDir: dir.path })
    try {
      await check(store)
    } finally {
      await store.close()
    }
    const migrated = new Database(join(dir.path, 'weir.db'), { readonly: true })
    expect(migrated.pragma('user_version', { simple: true })).toBe(sqliteMigrations.length)
    migrated.close()
    await after?.(dir.path)
  } finally {
    await dir.remove()
  }
}

/** The same on PostgreSQL: a database `name` of `pg` made at schema `version` holding what `seed` writes, checked once an engine opened (and migrated) it. */
export async function fromPostgresSchema(pg: EmbeddedPostgresFixture, name: string, version: number, seed: (tx: Queryable) => Promise<void>, check: (store: MessageStore) => Promise<void>): Promise<void> {
  const url = await pg.server.createDatabase(name)
  const db = openDb(url, { max: 1 })
  try {
    await db.transaction(async (tx) => {
      await tx.query('CREATE TABLE weir_schema (version integer NOT NULL)')
      for (const m of pgMigrations.slice(0, version)) await tx.query(m)
      await tx.query('INSERT INTO weir_schema (version) VALUES ($1)', [version])
      await seed(tx)
    })
    const store = await openPostgresStore({ url })
    try {
      await check(store)
    } finally {
      await store.close()
    }
    expect(await db.query('SELECT version FROM weir_schema')).toEqual([{ version: pgMigrations.length }])
  } finally {
    await db.end()
  }
}
