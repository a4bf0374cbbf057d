// Helpers for the http-listener security tests only: no tests here.
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { join, resolve } from 'node:path'
import { afterEach } from 'vitest'
import { tempDir, until, type LogLine } from '../_setup.ts'
import { startTestChannel, textCollector } from '../reliability/_helpers.ts'

const ROOT = resolve(import.meta.dirname, '../..')

export interface WeirProcess {
  port: number
  pid: number
  /** The JSON log lines written so far. */
  logs(): LogLine[]
  /** Resident set size of the process now (bytes), from /proc. */
  rss(): number
  stop(): Promise<void>
}

/**
 * Runs `weir run` on a channel of an http-listener (with `config`) and a file destination, as a
 * child process whose file-descriptor soft limit is `fdLimit` (the common default of 1024 unless
 * given), and resolves once it listens.
 */
export async function startWeir(config: Record<string, unknown>, options: { fdLimit?: number } = {}): Promise<WeirProcess> {
  const dir = await tempDir('weir-sec-')
  const file = join(dir.dir, 'channel.json')
  await mkdir(join(dir.dir, 'out'))
  await writeFile(file, JSON.stringify({
    name: 'sec-listener',
    source: { type: 'http-listener', config: { port: 0, ...config } },
    destinations: [{ name: 'out', type: 'file', config: { directory: 'out' } }],
  }))
  const child: ChildProcess = spawn('sh', ['-c', 'ulimit -n "$1" && shift && exec "$@"', 'sh', String(options.fdLimit ?? 1024), process.execPath, join(ROOT, 'bin/weir.js'), 'run', file, '--data-dir', join(dir.dir, 'data')], {
    cwd: ROOT, env: { ...process.env, WEIR_LOG_LEVEL: 'info', CI: '1' }, stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout!.on('data', (d) => (output += d))
  child.stderr!.on('data', (d) => (output += d))
  const exited = new Promise<void>((ok) => child.once('exit', () => ok()))
  const logs = () => output.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as LogLine)
  let port = 0
  await until(() => {
    if (child.exitCode !== null) throw new Error(`weir run exited: ${output}`)
    const url = logs().find((l) => l.msg === 'listening')?.url as string | undefined
    port = url ? Number(new URL(url).port) : 0
    return port > 0
  }, 30_000)
  return {
    port, pid: child.pid!, logs,
    rss: () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]) * 1024,
    async stop() {
      if (child.exitCode === null) child.kill('SIGKILL')
      await exited
      await dir.cleanup()
    },
  }
}

/** A raw TCP client: what it received, and whether the server closed the connection. */
export interface RawClient { socket: Socket; received(): string; closed: boolean }

/**
 * Opens a TCP connection to the listener (from `localAddress`, a loopback address) and writes `text`;
 * resolves once connected, or once the connection is closed or refused (`closed`).
 */
export function rawClient(port: number, text: string | Buffer, localAddress = '127.0.0.1'): Promise<RawClient> {
  return new Promise((ok) => {
    let received = ''
    const client: RawClient = { socket: connect({ port, host: '127.0.0.1', localAddress }), received: () => received, closed: false }
    client.socket.on('data', (d) => (received += d))
    client.socket.on('close', () => { client.closed = true; ok(client) })
    client.socket.on('error', () => {}) // a reset is the server closing the connection: recorded by 'close'
    client.socket.once('connect', () => { client.socket.write(text); ok(client) })
  })
}

/** Headers of a request that never ends: `bodyBytes` of a declared `contentLength` follow at once. */
export function stalledRequest(bodyBytes = 0, contentLength = bodyBytes + 1): Buffer {
  const head = `POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${contentLength}\r\n\r\n`
  return Buffer.concat([Buffer.from(head), Buffer.alloc(bodyBytes, 0x20)])
}

export interface ListenerChannel {
  url: string
  /** Every log line so far, parsed. */
  logs(): LogLine[]
  /** Every log line so far, as text. */
  rawLog(): string
  close(): Promise<void>
}

/**
 * Runs, in this process, a channel of an http-listener (with `config`) and a file destination, over
 * the real runtime and SQLite store, with its log collected.
 */
export async function startListenerChannel(config: Record<string, unknown>): Promise<ListenerChannel> {
  const collector = textCollector()
  const ch = await startTestChannel({
    name: 'sec-listener',
    source: { type: 'http-listener', config: { port: 0, ...config } },
    destinations: [{ name: 'out', type: 'file', config: { directory: 'out' } }],
  }, { log: collector.log })
  return {
    url: `http://127.0.0.1:${ch.handle.source.address!()!.port}`,
    rawLog: () => collector.texts.join(''),
    logs: () => collector.texts.join('').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as LogLine),
    close: () => ch.close(),
  }
}

/** What a test started: its raw clients, `weir run` process and in-process channel, all closed after each test. */
export function useStarted(): { clients: RawClient[]; weir?: WeirProcess; channel?: ListenerChannel } {
  const started: { clients: RawClient[]; weir?: WeirProcess; channel?: ListenerChannel } = { clients: [] }
  afterEach(async () => {
    for (const c of started.clients.splice(0)) c.socket.destroy()
    await started.weir?.stop()
    await started.channel?.close()
    delete started.weir
    delete started.channel
  })
  return started
}
