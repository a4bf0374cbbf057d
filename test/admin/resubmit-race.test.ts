// The dashboard of a running engine and `weir messages resubmit` confirming the same previewed set at
// the same instant: each checks the set, finds it as previewed, and only then writes. The store's
// resubmit checks it again in its write transaction, so exactly one of them resubmits.
import { describe, expect, it } from 'vitest'
import { runCli } from '../_cli.ts'
import { writesHeld } from '../_sqlite.ts'
import { until } from '../runtime/_helpers.ts'
import { adminConfig, bearer, call, useAdminFixture } from './_admin.ts'

const OPERATOR_TOKEN = 'op-7c1e5a9f3b2d46e8a0b4'
const config = () => adminConfig({ tokens: [{ name: 'olivia', role: 'operator', token: { $env: 'OP' } }] }, { OP: OPERATOR_TOKEN })

describe('the dashboard and the command line confirming one resubmit at the same instant', () => {
  const fx = useAdminFixture(config)

  it('both past the check before either writes: one resubmits, the other refuses as a spent confirmation does (409 / exit 1); every message is sent again once and audited once', async () => {
    fx.rt.api.behaviour = () => ({ status: 400, body: 'rejected' })
    const ids: string[] = []
    for (let i = 0; i < 3; i++) ids.push((await fx.feed.emit({ n: i })).id)
    await fx.rt.handles[0]!.whenIdle({ timeoutMs: 10_000 })
    fx.rt.api.behaviour = () => undefined // the API is fixed
    const sent = fx.rt.api.received.length

    const preview = await call(fx.url, '/api/channels/orders/resubmit?status=error', { headers: bearer(OPERATOR_TOKEN) })
    expect(preview.json).toMatchObject({ count: 3, messages: 3 })
    const cli = (...more: string[]) => runCli(['messages', 'resubmit', '--data-dir', fx.rt.dir.path, '--channel', 'orders', '--status', 'error', ...more], {})
    const token = /--confirm (\d+:[0-9a-f]+)/.exec((await cli()).out)![1]!
    expect(token).toBe(`3:${preview.json.digest.slice(0, 16)}`) // one set, one digest

    // Writes wait for the test's lock on weir.db (reads go on), so both check the set before either resubmits.
    const [posted, ran] = await writesHeld(fx.rt.dir.path, 1500, () => Promise.all([
      call(fx.url, '/api/channels/orders/resubmit', {
        method: 'POST', headers: { ...bearer(OPERATOR_TOKEN), 'content-type': 'application/json' },
        body: JSON.stringify({ status: 'error', maxSeq: preview.json.maxSeq, count: 3, digest: preview.json.digest, confirm: 3 }),
      }),
      cli('--confirm', token),
    ]))
    if (posted.status === 200) {
      expect(posted.json).toMatchObject({ resubmitted: 3 })
      expect([ran.code, ran.err]).toEqual([1, `--confirm ${token} does not match: orders: status error still matches 3 finished message(s), but not as previewed (this --confirm was used already, or some left the set, others joined it or finished again meanwhile); nothing resubmitted, preview again\n`])
    } else {
      expect([ran.code, ran.out]).toEqual([0, expect.stringMatching(/^resubmitted 3 message\(s\)\n/)])
      expect([posted.status, posted.json.error]).toEqual([409, 'the set changed since its preview: it still holds 3 finished message(s), but not as previewed (this confirmation was used already, or some were resubmitted, purged or finished meanwhile); nothing was resubmitted, preview it again'])
    }
    await until(async () => (await Promise.all(ids.map(async (id) => (await fx.rt.store.get(id))!.message.status))).every((s) => s === 'delivered'), 15_000, 'the set delivered')
    await fx.rt.handles[0]!.whenIdle({ timeoutMs: 10_000 })
    expect(fx.rt.api.received.length).toBe(sent + 3 * 2) // three messages to api and audit, once
    expect((await fx.rt.store.auditLog()).map((e) => [e.action, e.count])).toEqual([['resubmit', 3]])
  })

  it('one message: its confirmation page\'s POST and weir messages resubmit ID --confirm, both past the check: one resubmits it, the other refuses (409 / exit 1)', async () => {
    const { id } = await fx.feed.emit({ n: 1 })
    await fx.rt.handles[0]!.whenIdle({ timeoutMs: 10_000 })
    const sent = fx.rt.api.received.length
    const page = await call(fx.url, `/messages/${id}/resubmit`, { headers: bearer(OPERATOR_TOKEN) })
    const digest = /name="digest" value="([0-9a-f]{64})"/.exec(page.text)![1]!
    const cli = (...more: string[]) => runCli(['messages', 'resubmit', id, '--data-dir', fx.rt.dir.path, ...more], {})
    const token = /--confirm (\d+:[0-9a-f]+)/.exec((await cli()).out)![1]!
    expect(token).toBe(`1:${digest.slice(0, 16)}`)
    const [posted, ran] = await writesHeld(fx.rt.dir.path, 1500, () => Promise.all([
      call(fx.url, `/messages/${id}/resubmit`, { method: 'POST', headers: { ...bearer(OPERATOR_TOKEN), 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ confirm: 'yes', digest }).toString() }),
      cli('--confirm', token),
    ]))
    if (posted.status === 303) expect([ran.code, ran.err]).toEqual([1, `--confirm ${token} does not match: these 1 message(s) are not as previewed (this --confirm was used already, or they finished again meanwhile); nothing resubmitted, preview again\n`])
    else {
      expect([ran.code, ran.out]).toEqual([0, `resubmitted 1 message(s)\n  ${id}\n`])
      expect([posted.status, posted.text]).toEqual([409, expect.stringContaining(`message ${id} changed since its confirmation page (this confirmation was used already, or it was resubmitted or finished meanwhile); nothing was resubmitted, confirm again`)])
    }
    await until(async () => (await fx.rt.store.get(id))!.message.status === 'delivered' && fx.rt.api.received.length >= sent + 2, 15_000, 'the message delivered again')
    await fx.rt.handles[0]!.whenIdle({ timeoutMs: 10_000 })
    expect(fx.rt.api.received.length).toBe(sent + 2) // to api and audit, once
    expect((await fx.rt.store.auditLog()).map((e) => [e.action, e.count])).toEqual([['resubmit', 1]])
  })
})
