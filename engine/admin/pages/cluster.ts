import { Refusal } from '../../../shared/inbound/refusal.ts'
import type { PostgresMessageStore } from '../../../shared/store/index.ts'
import type { EngineStatus } from '../../../shared/store/postgres/engines.ts'
import type { MessageStore } from '../../../shared/store/types.ts'
import { CHANNEL_COLUMNS, channelAgreement, channelRow, ENGINE_COLUMNS, engineRow, enginesJson, unknownDefinitions, type ChannelAgreement } from '../../commands/cluster.ts'
import type { ApiSources } from '../api.ts'
import type { Auth } from '../auth.ts'
import { sendJson } from '../http.ts'
import type { Router } from '../router.ts'
import { html, layout, pageUser, sendHtml, type Raw } from './html.ts'

/** The store as a cluster's PostgreSQL store, or undefined (the embedded SQLite store: the engine runs alone). */
export function clusterStoreOf(store: MessageStore | undefined): PostgresMessageStore | undefined {
  return typeof (store as Partial<PostgresMessageStore> | undefined)?.cluster === 'function' ? store as PostgresMessageStore : undefined
}

function runningStore(src: ApiSources): MessageStore {
  const store = src.store()
  if (!store) throw new Refusal(503, 'the engine is not running yet')
  return store
}

/** An engine as `weir cluster status` shows it, its state as a badge and this engine marked. */
function engineTableRow(e: EngineStatus, self: string | undefined): Raw {
  const [id, ...rest] = engineRow(e)
  const cells = rest.map((cell, i) => (i === 4 ? html`<td data-field="state"><span class="status s-${e.expired ? 'failing' : 'running'}">${cell}</span></td>` : html`<td>${cell}</td>`))
  return html`<tr data-engine="${e.id}"><td class="mono">${id}${e.id === self ? html` <strong>(this engine)</strong>` : ''}</td>${cells}</tr>`
}

/** A channel's definition on the live engines, as `weir cluster status` shows it; a disagreement as a failing badge. */
function channelTableRow(a: ChannelAgreement): Raw {
  const [channel, engines, definition] = channelRow(a)
  const cell = a.fingerprints.length > 1 ? html`<span class="status s-failing">${definition}</span>` : definition
  return html`<tr data-channel="${channel}"><td>${channel}</td><td>${engines}</td><td data-field="definition">${cell}</td></tr>`
}

/** The channels' definitions on the live engines, and the engines that record none (an older weir). */
function definitionsSection(engines: readonly EngineStatus[]): Raw {
  const agreement = channelAgreement(engines)
  const unknown = unknownDefinitions(engines)
  const disagree = agreement.filter((a) => a.fingerprints.length > 1).length
  const summary = disagree > 0
    ? `${disagree} channel(s) run with different definitions on live engines: every engine must run the same file and modules of a channel; stop the engines, change it everywhere and start them again.`
    : 'Every live engine that records definitions runs each channel with the same one.'
  return html`<h2>Channel definitions</h2><p${disagree > 0 ? html` class="error" role="alert"` : ''}>${summary}</p>
<table id="definitions" class="grid"><thead><tr>${CHANNEL_COLUMNS.map((c) => html`<th>${c[0] + c.slice(1).toLowerCase()}</th>`)}</tr></thead>
<tbody>${agreement.map(channelTableRow)}</tbody></table>${unknown.map((line) => html`<p class="error" data-field="unknown">${line}</p>`)}`
}

const ALONE = 'This engine runs alone: a single engine with the embedded (SQLite) store. Engines form a cluster when they share a PostgreSQL store (--store postgres://…).'

/**
 * GET /cluster and GET /api/cluster: the engines sharing the PostgreSQL store, as `weir cluster
 * status` lists them; with the embedded store, that the engine runs alone. The navigation links the
 * page only with a PostgreSQL store.
 */
export function clusterPage(router: Router, src: ApiSources, auth: Auth): void {
  router.get('/api/cluster', async ({ res }) => {
    const store = clusterStoreOf(runningStore(src))
    if (!store) return sendJson(res, 200, { clustered: false, engines: [] })
    const engines = await store.cluster()
    const channels = channelAgreement(engines)
    sendJson(res, 200, { clustered: true, self: store.engineId ?? null, engines: enginesJson(engines, channels), channels })
  })
  router.get('/cluster', async (ctx) => {
    const user = pageUser(ctx, auth)
    const store = clusterStoreOf(runningStore(src))
    const engines = store ? await store.cluster() : []
    const table = html`<table id="engines" class="grid"><thead><tr>${ENGINE_COLUMNS.map((c) => html`<th>${c[0] + c.slice(1).toLowerCase()}</th>`)}</tr></thead>
<tbody>${engines.map((e) => engineTableRow(e, store?.engineId))}</tbody></table>`
    const body = store
      ? html`<h1>Cluster</h1><p>${engines.length} engine(s) share the PostgreSQL store; an engine that stopped cleanly has left, one that died shows as expired until another takes its claims over.</p>${table}${definitionsSection(engines)}`
      : html`<h1>Cluster</h1><p class="notice" role="status">${ALONE}</p>`
    sendHtml(ctx.res, 200, layout('Cluster', user, body))
  })
}
