// @ts-check
// Plain JavaScript: shared by the SQLite store's writer thread (which runs without a TypeScript
// loader) and the PostgreSQL store.

/**
 * What resubmitting these finished messages would do, from each one's per-destination outcomes:
 * the destinations that have not got it are sent it again, or every destination when all have.
 * @param {Array<[id: string, deliveries: Array<{ destination: string, status: string }>]>} messages
 * @returns {{ messages: number, destinations: Record<string, number>, undelivered: number }}
 */
export function previewOf(messages) {
  /** @type {Record<string, number>} */
  const destinations = {}
  let undelivered = 0
  for (const [, deliveries] of messages) {
    if (deliveries.length === 0) undelivered++
    const open = deliveries.filter((d) => d.status !== 'delivered')
    for (const d of open.length > 0 ? open : deliveries) destinations[d.destination] = (destinations[d.destination] ?? 0) + 1
  }
  return { messages: messages.length, destinations, undelivered }
}
