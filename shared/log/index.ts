import { pino, type Logger, type DestinationStream } from 'pino'
import pretty from 'pino-pretty'
import { scrubSecrets, REDACTED } from '../secret.ts'

export type { Logger }

/** Keys whose values are credentials wherever they appear, at any of the first levels of nesting. */
const SENSITIVE_KEYS = [
  'authorization', 'Authorization', 'dpop', 'DPoP', 'cookie', 'Cookie', 'set-cookie', 'proxy-authorization',
  'access_token', 'refresh_token', 'id_token', 'client_secret', 'client_assertion', 'assertion',
  'accessToken', 'refreshToken', 'clientSecret', 'privateKey', 'private_key', 'password', 'token', 'apiKey', 'x-api-key',
]

/** The HTTP headers (lowercase, as Node gives them) among SENSITIVE_KEYS: whoever records requests masks these. */
export const SENSITIVE_HEADERS: readonly string[] = ['authorization', 'proxy-authorization', 'dpop', 'cookie', 'set-cookie', 'x-api-key']

function redactPaths(): string[] {
  const paths: string[] = []
  for (const k of SENSITIVE_KEYS) {
    const key = /^[A-Za-z_$][\w$]*$/.test(k) ? k : `["${k}"]`
    const dot = key.startsWith('[') ? '' : '.'
    paths.push(key, `*${dot}${key}`, `*.*${dot}${key}`, `*.*.*${dot}${key}`)
  }
  return paths
}

export interface LoggerOptions {
  level?: string
  /** Where lines go; defaults to stdout. Tests pass a stream to collect them. */
  destination?: DestinationStream | NodeJS.WritableStream
  /** Human-readable lines instead of JSON; defaults to whether stdout is a TTY (and not CI). */
  pretty?: boolean
  name?: string
}

/**
 * The Weir logger: pino JSON lines, readable on a TTY. Credentials are removed twice: by key
 * (Authorization, DPoP, Cookie headers; access/refresh tokens; assertions; secrets) and by value
 * (every writeOnly config value and every token the OAuth client has seen is scrubbed from each line).
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const usePretty = options.pretty ?? (Boolean(process.stdout.isTTY) && !process.env.CI)
  const target = options.destination ?? (usePretty ? undefined : pino.destination({ fd: 1, sync: true }))
  const stream = usePretty
    ? pretty({ destination: (target as NodeJS.WritableStream | undefined) ?? 1, colorize: Boolean(process.stdout.isTTY), sync: true, ignore: 'pid,hostname', translateTime: 'SYS:HH:MM:ss.l' })
    : (target as DestinationStream)
  return pino(
    {
      name: options.name ?? 'weir',
      level: options.level ?? process.env.WEIR_LOG_LEVEL ?? 'info',
      redact: { paths: redactPaths(), censor: REDACTED },
      base: undefined,
      hooks: { streamWrite: (line: string) => scrubSecrets(line) },
      serializers: { err: pino.stdSerializers.err },
    },
    stream,
  )
}

/** A logger that discards everything, for library use without a configured logger. */
export const silentLogger: Logger = pino({ level: 'silent' })
