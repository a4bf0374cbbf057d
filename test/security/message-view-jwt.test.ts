// The message view (`weir messages show`/`list`, the dashboard's /messages/ID) promises that
// "values under credential-like keys show as [REDACTED], known secrets and JWTs are scrubbed"
// (README, "The dashboard"). A JWT in a body or error outside a credential-like key, and in an
// excerpt an older Weir stored unredacted, must not be shown.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { CommandIO } from '../../engine/cli-io.ts'
import { OPEN_CONFIG } from '../../engine/admin/config.ts'
import { startAdminServer, type AdminServer } from '../../engine/admin/server.ts'
import { run as messagesCommand } from '../../engine/commands/messages.ts'
import { silentLogger } from '../../shared/log/index.ts'
import { openSqliteStore } from '../../shared/store/index.ts'
import { call } from '../admin/_admin.ts'

// Three distinct JWTs (header.payload.signature, base64url), none registered as a secret in this process.
const jwt = (sub: string) => `eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.${Buffer.from(JSON.stringify({ sub, aud: 'https://api.example' })).toString('base64url')}.c2lnbmF0dXJlLWJ5dGVzLW9mLTI1Ng`
const IN_BODY = jwt('in-a-json-body')
const IN_TEXT = jwt('in-a-text-body')
const IN_HEADER_KEY = jwt('under-authorization')
const IN_ERROR = jwt('in-an-error')
const IN_ATTEMPT = jwt('in-an-attempt-error')
const IN_EXCERPT = jwt('in-an-old-excerpt')
const IN_ATTRIBUTE = jwt('in-an-attribute')
const ALL = [IN_BODY, IN_TEXT, IN_HEADER_KEY, IN_ERROR, IN_ATTEMPT, IN_EXCERPT, IN_ATTRIBUTE]

let dir: string
let ids: { json: string; text: string }
let admin: AdminServer
let store: ReturnType<typeof openSqliteStore>

function io() {
  const out: string[] = []
  const err: string[] = []
  const value: CommandIO = { out: (t) => void out.push(t), err: (t) => void err.push(t), env: {}, cwd: dir, isTTY: false }
  return { io: value, text: () => [...out, ...err].join('\n') }
}

async function cli(args: string[]): Promise<string> {
  const t = io()
  expect(await messagesCommand([...args, '--data-dir', 'data'], t.io)).toBe(0)
  return t.text()
}

const shown = (text: string) => ALL.filter((j) => text.includes(j) || text.includes(j.split('.')[1]!))

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weir-view-jwt-'))
  store = openSqliteStore({ dataDir: join(dir, 'data') })
  const a = await store.enqueue('adt', {
    body: { patient: { mrn: '203713' }, note: `forwarded with Bearer ${IN_BODY}`, headers: { Authorization: `Bearer ${IN_HEADER_KEY}` } },
    contentType: 'application/json',
    attributes: { 'x-forwarded-for-user': IN_ATTRIBUTE },
  })
  const b = await store.enqueue('adt', { body: `POST /orders HTTP/1.1\r\nAuthorization: Bearer ${IN_TEXT}\r\n\r\n{}`, contentType: 'text/plain' })
  await store.claim('adt', 2)
  await store.complete(a.id, 'error', [{
    destination: 'api', part: 0, status: 'error',
    attempt: { startedAt: 1, endedAt: 2, outcome: 'permanent', responseStatus: 400, error: `ERR_HTTP_STATUS: answered 400: token ${IN_ATTEMPT} expired`, excerpt: `{"detail":"token ${IN_EXCERPT} expired"}` },
  }], `api: ERR_HTTP_STATUS: token ${IN_ERROR} expired`)
  await store.complete(b.id, 'delivered')
  ids = { json: a.id, text: b.id }
  admin = await startAdminServer({ host: '127.0.0.1', port: 0, config: OPEN_CONFIG, log: silentLogger })
  admin.attach({ store, handles: [] })
})
afterAll(async () => {
  await admin?.close()
  await store?.close()
  await rm(dir, { recursive: true, force: true })
})

describe('JWTs in the message view', () => {
  it('weir messages show (text and --json) shows none, and says where one was', async () => {
    for (const id of [ids.json, ids.text]) {
      const text = await cli(['show', id])
      const json = await cli(['show', id, '--json'])
      expect([shown(text), shown(json)]).toEqual([[], []])
      expect(text).toContain('[REDACTED]')
    }
    const text = await cli(['show', ids.json])
    expect(text).toContain('"note": "forwarded with Bearer [REDACTED]"')
    expect(text).toContain('"mrn": "203713"') // the rest of the body is shown as it is
  })

  it('weir messages list (table and --json) shows none', async () => {
    expect(shown(await cli(['list']))).toEqual([])
    expect(shown(await cli(['list', '--json']))).toEqual([])
  })

  it('the dashboard\'s message page shows none', async () => {
    for (const id of [ids.json, ids.text]) {
      const page = await call(admin.url, `/messages/${id}`)
      expect(page.status).toBe(200)
      expect(shown(page.text)).toEqual([])
    }
  })
})
