export type * from './types.ts'
export { MESSAGE_STATUSES } from './types.ts'
export { openSqliteStore, StoreError, type SqliteStoreOptions, type SqliteMessageStore } from './sqlite.ts'
export { newMessageId } from './id.ts'
