import type { Server, Socket } from 'node:net'

export interface ConnectionLimits {
  /** Open connections at most. */
  maxConnections: number
  /** Open connections from one remote address at most; absent: no limit of its own. */
  maxConnectionsPerAddress?: number
  /** Called after a connection was evicted or refused to keep within the limits. */
  onLimit?: () => void
}

export interface ConnectionGuard {
  /** The connection of `socket` is serving a request: it is no longer evicted to make room. */
  busy(socket: Socket): void
  /** The connection of `socket` waits for its next request's headers (keep-alive): it may be evicted again. */
  idle(socket: Socket): void
  /** Open connections now, and how many were evicted or refused since the start. */
  stats(): { open: number; evicted: number; refused: number }
}

interface Conn { key: string; socket: Socket; address: string }

const keyOf = (socket: Socket) => `${socket.remoteAddress ?? ''}|${socket.remotePort ?? ''}`

/**
 * Caps the connections of a listening server, overall and per remote address, so that half-open
 * clients cannot take every file descriptor. At a cap, a new connection takes the place of the
 * connection of the same scope that has waited longest for request headers (a client that sent
 * partial headers, or a keep-alive connection between requests): it is closed. When every
 * connection of that scope is serving a request, the new connection is closed at once, not queued.
 *
 * Connections are told apart by remote address and port, which a TLS socket shares with the TCP
 * socket under it, so `busy`/`idle` take either.
 *
 * @example
 * const guard = guardConnections(server, { maxConnections: 512 })
 * server.on('request', (req, res) => { guard.busy(req.socket); res.once('close', () => guard.idle(req.socket)) })
 */
export function guardConnections(server: Server, limits: ConnectionLimits): ConnectionGuard {
  const open = new Map<string, Conn>()
  /** Connections waiting for request headers, the longest-waiting first (a Map keeps insertion order). */
  const waiting = new Map<string, Conn>()
  const perAddress = new Map<string, number>()
  let evicted = 0
  let refused = 0

  const forget = (c: Conn) => {
    if (open.get(c.key) !== c) return
    open.delete(c.key)
    waiting.delete(c.key)
    const n = perAddress.get(c.address)! - 1
    if (n) perAddress.set(c.address, n)
    else perAddress.delete(c.address)
  }

  const evictOldest = (address?: string): boolean => {
    for (const c of waiting.values()) {
      if (address !== undefined && c.address !== address) continue
      forget(c)
      c.socket.destroy()
      evicted++
      limits.onLimit?.()
      return true
    }
    return false
  }

  const makeRoom = (address: string): boolean => {
    const perAddressFull = limits.maxConnectionsPerAddress !== undefined && (perAddress.get(address) ?? 0) >= limits.maxConnectionsPerAddress
    if (perAddressFull && !evictOldest(address)) return false
    return open.size < limits.maxConnections || evictOldest()
  }

  // Before the HTTP (or TLS) layer sees the socket: a refused connection costs no parser.
  server.prependListener('connection', (socket: Socket) => {
    const address = socket.remoteAddress ?? ''
    if (!makeRoom(address)) {
      refused++
      socket.destroy()
      limits.onLimit?.()
      return
    }
    const conn: Conn = { key: keyOf(socket), socket, address }
    open.set(conn.key, conn)
    waiting.set(conn.key, conn)
    perAddress.set(address, (perAddress.get(address) ?? 0) + 1)
    socket.once('close', () => forget(conn))
  })

  return {
    busy(socket) { waiting.delete(keyOf(socket)) },
    idle(socket) {
      const c = open.get(keyOf(socket))
      if (!c || socket.destroyed) return
      waiting.delete(c.key)
      waiting.set(c.key, c)
    },
    stats: () => ({ open: open.size, evicted, refused }),
  }
}
