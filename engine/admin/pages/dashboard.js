// @ts-nocheck -- browser code: the project compiles for Node (no DOM types); test/admin/dashboard.test.ts runs it in Chromium.
// The dashboard's only script (the CSP allows no inline one): keeps the channel list's rows live from
// the server-sent events of /api/events (a snapshot, then the changed channels about every second),
// or, when the stream fails repeatedly, by reading /api/channels every 2 s. Values are set as text,
// never as HTML. A session that ended (401: logout, expiry, an engine restart) sends the page to
// sign-in, which returns here; an engine that does not answer (network error, 5xx) shows
// "connection lost: figures as of HH:MM:SS; retrying" and marks the figures stale until it answers.
'use strict'

function age(sec) {
  if (sec === null || sec === undefined) return '–'
  if (sec < 60) return `${Math.round(sec)} s`
  if (sec < 3600) return `${Math.round(sec / 60)} min`
  if (sec < 86400) return `${Math.round(sec / 3600)} h`
  return `${Math.round(sec / 86400)} d`
}

/** A row's Pause/Resume form follows the channel's status (an operator elsewhere may have paused it). */
function toggle(row, c) {
  const form = row.querySelector('form[action$="/pause"], form[action$="/resume"]')
  if (!form) return
  // A channel stopping or stopped (onError: "stop") runs no more until the engine restarts: no action.
  form.hidden = c.status === 'stopped' || c.status === 'stopping'
  const paused = c.status === 'paused'
  const action = `/channels/${encodeURIComponent(c.name)}/${paused ? 'resume' : 'pause'}`
  if (form.getAttribute('action') === action) return
  form.setAttribute('action', action)
  form.querySelector('button').textContent = paused ? 'Resume' : 'Pause'
}

/** Sets the text of the `data-field` cell in `scope` (as text, never HTML), only when it changed. */
function set(scope, field, text) {
  const cell = scope.querySelector(`[data-field="${field}"]`)
  if (cell && cell.textContent !== String(text)) cell.textContent = String(text)
}

/** What the channel list's row and the channel page both show: the status badge and the counters. */
function setStatusAndCounters(scope, c) {
  set(scope, 'status', c.status)
  scope.querySelector('[data-field="status"]').className = `status s-${c.status}`
  set(scope, 'received', c.counters.received)
  set(scope, 'delivered', c.counters.delivered)
  set(scope, 'errors', c.counters.errors)
  set(scope, 'rejected', c.counters.rejected)
  set(scope, 'refusing', refusing(c))
}

/** "refusing input: queue full (queueLimit) since 14:02:11 UTC" while the channel refuses its source's input (as the pages render it). */
function refusing(c) {
  if (!c.refusing) return ''
  return `refusing input: ${c.refusing.limit === 'queueLimit' ? 'queue' : 'store'} full (${c.refusing.limit}) since ${c.refusing.since.slice(11, 19)} UTC`
}

/** The channel page: its status, counters and each destination's pause and breaker state. */
function updateChannel(section, channels) {
  const c = channels.find((x) => x.name === section.dataset.channel)
  if (!c) return
  setStatusAndCounters(section, c)
  set(section, 'rejectedByReason', rejectedByReason(c.rejections))
  for (const d of c.destinations) {
    const row = [...section.querySelectorAll('tr[data-destination]')].find((r) => r.dataset.destination === d.name)
    if (!row) continue
    set(row, 'paused', d.paused ? 'paused' : 'no')
    set(row, 'breaker', d.breaker)
  }
  section.dataset.updated = new Date().toISOString()
}

function update(table, channels) {
  fresh(table)
  if (table.tagName !== 'TABLE') return updateChannel(table, channels)
  const byName = new Map(channels.map((c) => [c.name, c]))
  for (const row of table.tBodies[0].rows) {
    const c = byName.get(row.dataset.channel)
    if (!c) continue
    setStatusAndCounters(row, c)
    set(row, 'queueDepth', c.queueDepth ?? '–')
    set(row, 'oldest', age(c.oldestQueuedAgeSec))
    set(row, 'pausedDestinations', pausedDestinations(c))
    toggle(row, c)
  }
  table.dataset.updated = new Date().toISOString()
}

/** "destinations paused: api, audit" when the channel runs but some destination is paused (the list shows it beside the status). */
function pausedDestinations(c) {
  const paused = c.status === 'paused' ? [] : c.destinations.filter((d) => d.paused).map((d) => d.name)
  return paused.length ? `destinations paused: ${paused.join(', ')}` : ''
}

/** "(unauthorized 2 · unsupported media type 1)": the reasons input was rejected for, those counted only (as the channel page renders it). */
function rejectedByReason(by) {
  const shown = Object.entries(by ?? {}).filter(([, n]) => n > 0).map(([r, n]) => `${r.replaceAll('_', ' ')} ${n}`)
  return shown.length ? `(${shown.join(' · ')})` : ''
}

/** When the figures shown were last read (the page's load at first). */
let asOf = new Date()

/** The page's "connection lost" notice, created hidden before the live table on first use. */
function noticeOf(table) {
  let notice = document.getElementById('live-notice')
  if (notice) return notice
  notice = document.createElement('p')
  notice.id = 'live-notice'
  notice.className = 'error'
  notice.setAttribute('role', 'alert')
  notice.hidden = true
  table.parentNode.insertBefore(notice, table)
  return notice
}

/** The engine does not answer (network error, 5xx): say so, and mark the figures shown as stale. */
function lost(table) {
  const notice = noticeOf(table)
  notice.textContent = `connection lost: figures as of ${asOf.toTimeString().slice(0, 8)}; retrying`
  notice.hidden = false
  table.dataset.stale = 'true'
}

/** Answers came back: the figures are live again. */
function fresh(table) {
  asOf = new Date()
  const notice = document.getElementById('live-notice')
  if (notice) notice.hidden = true
  delete table.dataset.stale
}

/** The session ended (logout, expiry, an engine restart): to sign-in, and back to this page after it. */
function signIn() {
  location.assign(`/login?${new URLSearchParams({ next: location.pathname + location.search })}`)
}

function poll(table) {
  table.dataset.live = 'poll'
  const tick = async () => {
    try {
      const res = await fetch(table.dataset.poll, { credentials: 'same-origin', headers: { accept: 'application/json' } })
      if (res.status === 401) return signIn()
      if (res.ok) update(table, (await res.json()).channels)
      else lost(table)
    } catch {
      lost(table) // the engine is down or restarting: the next tick tries again
    }
    setTimeout(tick, 2000)
  }
  tick()
}

/** Errors in a row (without an event between them) after which the page gives up the stream and polls. */
const MAX_STREAM_ERRORS = 3

function stream(table) {
  if (typeof EventSource !== 'function') return poll(table)
  const source = new EventSource(table.dataset.stream)
  let errors = 0
  table.dataset.live = 'sse'
  source.addEventListener('channels', (e) => {
    errors = 0
    update(table, JSON.parse(e.data).channels)
  })
  source.addEventListener('error', () => {
    // EventSource reconnects by itself (and gets a fresh snapshot) unless the server refused (closed);
    // polling then tells a refused session (401: sign in again) from an engine that does not answer.
    if (source.readyState === EventSource.CLOSED || ++errors >= MAX_STREAM_ERRORS) {
      source.close()
      poll(table)
    } else lost(table)
  })
}

document.addEventListener('DOMContentLoaded', () => {
  const table = document.querySelector('table[data-stream], section[data-stream]')
  if (table) stream(table)
})
