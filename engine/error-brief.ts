// Why a listed message is where it is, in a list's column (`weir messages list`, the dashboard's
// message log): the full error is too long there, and the HTTP status an API answered must not be
// cut off behind the request's URL. The full text stays in `weir messages show` and --json.
import { escapeControl } from '../shared/http/excerpt.ts'
import type { StoredMessage } from '../shared/store/types.ts'
import { scrubShown } from './message-view.ts'

/** `<where>: [gave up after …: ][CODE: ]<text>`: how the runtime words a failure (`describeFailure` after the destination or filter). */
const FAILURE = /^([^:]{1,200}): (?:gave up after ([^:]+?)(?:: |$))?(?:([A-Z][A-Z0-9_]{2,}): )?([\s\S]*)$/
/** A request line before what happened (`POST https://host/path answered 422…`): the destination already says where. */
const REQUEST_LINE = /^[A-Z]+ [a-z][a-z0-9+.-]*:\/\/\S+:? /
/**
 * Where the next destination's failure starts in a message in error at several (`a: …; b: ERR_…`):
 * a destination name, then a code or "gave up after", so that a "; x: " an answer quoted stays.
 */
const NEXT_FAILURE = /; (?=[a-z0-9][a-z0-9._-]*: (?:gave up after |[A-Z][A-Z0-9_]{2,}: ))/

/**
 * One failure in brief: its place, then `http 503` (and what the API said after the status) or its
 * code and text; `tail` starts with its separator.
 */
function briefOne(text: string): { head: string; tail: string } {
  const m = FAILURE.exec(text)
  if (!m) return { head: text, tail: '' }
  const [, where, gaveUp, code, detail] = m as unknown as [string, string, string | undefined, string | undefined, string]
  const plain = detail.replace(REQUEST_LINE, '')
  const answered = /^answered (\d{3})\b([\s\S]*)$/.exec(plain)
  const spent = gaveUp ? ` (gave up after ${gaveUp})` : ''
  if (answered) return { head: `${where}: http ${answered[1]}${spent}`, tail: answered[2]! }
  if (code) return { head: `${where}: ${code}${spent}`, tail: plain ? `: ${plain}` : '' }
  return { head: gaveUp ? `${where}: gave up after ${gaveUp}` : `${where}:`, tail: plain ? `${gaveUp ? ':' : ''} ${plain}` : '' }
}

/**
 * A stored error in at most `width` characters, the useful part first: where it failed (a
 * destination, `filters/1`), then `http 422` when an API answered with a status, or the error's
 * code, then as much of what it said as fits. `api: ERR_HTTP_STATUS: POST https://…/Patient answered 503: "…"`
 * is `api: http 503: "…"`. A message in error at several destinations: each one's place and status
 * (or code) alone, `api: http 503; audit: http 422`. Text of another form is cut as it is.
 */
export function briefError(text: string, width: number): string {
  const parts = text.split(NEXT_FAILURE).map(briefOne)
  const line = parts.length === 1 ? `${parts[0]!.head}${parts[0]!.tail}` : parts.map((p) => p.head).join('; ')
  return line.length <= width ? line : `${line.slice(0, width - 1)}…`
}

/**
 * The column beside a listed message, scrubbed and with controls escaped: its error (`error`: why it
 * is in error, or a retrying one's latest, as `shownErrors` gives it) in brief, or the filter that
 * dropped a filtered one (`filtered by filters/2 (match)`).
 */
export function listedReason(m: StoredMessage, error: string | undefined, width: number): string {
  const text = error ?? (m.filteredBy !== undefined ? `filtered by ${m.filteredBy}` : '')
  return briefError(escapeControl(scrubShown(text)), width)
}
