export type * from './types.ts'
export { MESSAGE_STATUSES } from './types.ts'
export { openSqliteStore, StoreError, type SqliteStoreOptions } from './sqlite.ts'
export { newMessageId } from './id.ts'
