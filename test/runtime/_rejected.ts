import { connect, type Socket } from 'node:net'

/** A raw TCP socket to a listener, for bytes that are not whole MLLP frames; collects what comes back. */
export async function rawSocket(port: number): Promise<{ socket: Socket; data: Buffer[] }> {
  const socket = connect({ host: '127.0.0.1', port })
  await new Promise<void>((ok) => socket.once('connect', () => ok()))
  const data: Buffer[] = []
  socket.on('data', (d: Buffer) => data.push(d))
  socket.on('error', () => {})
  return { socket, data }
}
