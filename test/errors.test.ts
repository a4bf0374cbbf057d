import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ROOT } from '../engine/docs.ts'
import { ConfigError, ERROR_CODES, errorCodes, errorSpecs, HttpStatusError, isWeirError, PermanentError, RetryableError, WeirError } from '../shared/errors.ts'
import { classify } from '../shared/failure.ts'

describe('error registry', () => {
  it('gives each code one class whose instances carry the entry: code, retryable, userError, statusCode, name', () => {
    const e = new errorCodes.ERR_BACKPRESSURE('channel a: queue is full', { retryAfterMs: 1500 })
    expect([e.code, e.retryable, e.userError, e.statusCode, e.retryAfterMs, e.name, e.message]).toEqual(['ERR_BACKPRESSURE', true, false, 503, 1500, 'BackpressureError', 'channel a: queue is full'])
    const u = new errorCodes.ERR_USAGE('show takes one message id')
    expect([u.code, u.retryable, u.userError, u.statusCode]).toEqual(['ERR_USAGE', false, true, undefined])
    expect(e instanceof WeirError && isWeirError(e)).toBe(true)
  })

  it('builds the message from the template and keeps the options after its arguments', () => {
    const cause = new Error('boom')
    const e = new errorCodes.ERR_CHANNEL_STOPPED('adt', 'msg-1', 'ERR_HTTP_STATUS: 400', { cause })
    expect([e.code, e.message, e.cause]).toEqual(['ERR_CHANNEL_STOPPED', 'channel adt stopped: message msg-1 in error: ERR_HTTP_STATUS: 400', cause])
    expect(new errorCodes.ERR_NOT_IDLE('adt', '{"queued":1}').message).toBe('channel adt not idle: {"queued":1}')
  })

  it('asks each throw site of a "varies" code whether it is retryable', () => {
    expect(new errorCodes.ERR_STORE('message store write failed: SQLITE_FULL', { retryable: true }).retryable).toBe(true)
    expect(new errorCodes.ERR_STORE('no message store in ./data', { retryable: false }).retryable).toBe(false)
    expect([408, 429, 500, 503, 302, 400, 404].map((s) => new HttpStatusError(`GET / answered ${s}`, s).retryable)).toEqual([true, true, true, true, false, false, false])
  })

  it('gives the classes users throw their own codes', () => {
    const r = new RetryableError('lookup service down', { retryAfterMs: 2000 })
    const p = new PermanentError('patient does not exist')
    expect([r.code, r.retryable, r.retryAfterMs, r.name]).toEqual(['ERR_RETRYABLE', true, 2000, 'RetryableError'])
    expect([p.code, p.retryable, p.name]).toEqual(['ERR_DELIVERY_PERMANENT', false, 'PermanentError'])
  })

  it('keeps problems on ConfigError and its raw ajv errors out of enumeration', () => {
    const e = new ConfigError([{ file: 'a.json', pointer: '/name', message: 'must be string' }], [{ instancePath: '/name' } as never])
    expect([e.code, e.userError, e.message, e.name, Object.keys(e).includes('errors'), e.errors.length]).toEqual(['ERR_CONFIG_INVALID', true, 'a.json#/name: must be string', 'ConfigError', false, 1])
  })

  it('documents every code, one line each', () => {
    expect(ERROR_CODES.length).toBeGreaterThan(20)
    for (const code of ERROR_CODES) {
      expect(code, code).toMatch(/^ERR_[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$/)
      expect(errorSpecs[code].description, code).toMatch(/^[^\n]{10,}$/)
    }
  })
})

/** Source files of the engine, the components and shared/ (not tests). */
function sourceFiles(dir = ROOT): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    if (d.isDirectory()) return ['node_modules', 'test', 'bench', 'data', '.git'].includes(d.name) ? [] : sourceFiles(join(dir, d.name))
    return d.name.endsWith('.ts') ? [relative(ROOT, join(dir, d.name))] : []
  })
}

// The runtime still constructs WeirError directly (as ERR_INTERNAL) until it throws its registry classes.
const NOT_YET_CONVERTED = new Set<string>()

describe('throw sites', () => {
  it('construct a registry class, never a bare WeirError, and no code is patched on afterwards', () => {
    const offending = sourceFiles()
      .filter((f) => f !== 'shared/errors.ts' && !NOT_YET_CONVERTED.has(f))
      .filter((f) => /new WeirError\(|\.code = '|ERR_WEIR/.test(readFileSync(join(ROOT, f), 'utf8')))
    expect(offending).toEqual([])
  })
})

describe('classify: the one retry rule of filters and destinations', () => {
  const fetchFailure = (code: string) => Object.assign(new TypeError('fetch failed'), { cause: Object.assign(new Error('x'), { code }) })
  it('an error\'s own retryable flag decides; else a network code in the cause chain is retried, undici\'s refusal of the request as built is not', () => {
    expect([new RetryableError('later', { retryAfterMs: 5 }), new PermanentError('never'), new Error('plain')].map((e) => classify(e))).toEqual([
      { retryable: true, retryAfterMs: 5 }, { retryable: false }, { retryable: false },
    ])
    expect(['ECONNREFUSED', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_INVALID_ARG', 'UND_ERR_NOT_SUPPORTED'].map((c) => classify(fetchFailure(c)).retryable)).toEqual([true, true, true, false, false])
  })
})
