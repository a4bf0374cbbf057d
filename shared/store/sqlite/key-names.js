// @ts-check
/**
 * The search key names in use: a skip scan of message_keys' primary key (name first), one probe per
 * name, never a pass over every value. Its own module so that a test can EXPLAIN it.
 */
export const SEARCH_KEY_NAMES = `WITH RECURSIVE n(name) AS (
    SELECT min(name) FROM message_keys
    UNION ALL SELECT (SELECT min(name) FROM message_keys WHERE name > n.name) FROM n WHERE n.name IS NOT NULL
  ) SELECT name FROM n WHERE name IS NOT NULL`
