// @ts-nocheck -- browser code: the project compiles for Node (no DOM types); test/admin/dashboard.test.ts runs it in Chromium.
// The dashboard's only script (the CSP allows no inline one): keeps the channel list's counters live
// by reading /api/channels every 2 s. Values are set as text, never as HTML.
'use strict'

function age(sec) {
  if (sec === null || sec === undefined) return '–'
  if (sec < 60) return `${Math.round(sec)} s`
  if (sec < 3600) return `${Math.round(sec / 60)} min`
  if (sec < 86400) return `${Math.round(sec / 3600)} h`
  return `${Math.round(sec / 86400)} d`
}

function update(table, channels) {
  const byName = new Map(channels.map((c) => [c.name, c]))
  for (const row of table.tBodies[0].rows) {
    const c = byName.get(row.dataset.channel)
    if (!c) continue
    const set = (field, text) => {
      const cell = row.querySelector(`[data-field="${field}"]`)
      if (cell && cell.textContent !== String(text)) cell.textContent = String(text)
    }
    set('status', c.status)
    row.querySelector('[data-field="status"]').className = `status s-${c.status}`
    set('received', c.counters.received)
    set('delivered', c.counters.delivered)
    set('errors', c.counters.errors)
    set('queueDepth', c.queueDepth ?? '–')
    set('oldest', age(c.oldestQueuedAgeSec))
  }
  table.dataset.updated = new Date().toISOString()
}

function live(table) {
  const tick = async () => {
    try {
      const res = await fetch(table.dataset.live, { credentials: 'same-origin', headers: { accept: 'application/json' } })
      if (res.ok) update(table, (await res.json()).channels)
    } catch {
      // The next tick tries again (the engine may be restarting).
    }
    setTimeout(tick, 2000)
  }
  setTimeout(tick, 2000)
}

document.addEventListener('DOMContentLoaded', () => {
  const table = document.querySelector('table[data-live]')
  if (table) live(table)
})
