import { describe, expect, it } from 'vitest'
import { briefError } from '../../engine/error-brief.ts'

// The reason column of weir messages list and the dashboard's log: where it failed and the HTTP
// status or the error code first, so a long URL never pushes the status out of the column.

const URL = 'POST https://fhir.example.org/interconnect-prd-oauth/api/FHIR/R4/Patient'

describe('briefError', () => {
  it.each([
    ['an API\'s status, with what it answered', `epic-fhir: ERR_HTTP_STATUS: ${URL} answered 422: "OperationOutcome: invalid MRN"`, 'epic-fhir: http 422: "OperationOutcome: invalid MRN"'],
    ['a status without a body', `api: ERR_HTTP_STATUS: ${URL} answered 503`, 'api: http 503'],
    ['a retry budget spent', `api: gave up after 5 attempts: ERR_HTTP_STATUS: ${URL} answered 503: "busy"`, 'api: http 503 (gave up after 5 attempts): "busy"'],
    ['a 401 and what the challenge said', `api: ERR_OAUTH_CHALLENGE: ${URL} answered 401 invalid_token again after renewing the access token`, 'api: http 401 invalid_token again after renewing the access token'],
    ['a code without a status, the request line left out', `api: ERR_HTTP_TIMEOUT: ${URL} timed out after 30000 ms`, 'api: ERR_HTTP_TIMEOUT: timed out after 30000 ms'],
    ['a budget spent without a last error', 'api: gave up after 5 attempts', 'api: gave up after 5 attempts'],
    ['a filter\'s error', 'filters/1 "normalize": ERR_DELIVERY_PERMANENT: field missing', 'filters/1 "normalize": ERR_DELIVERY_PERMANENT: field missing'],
    ['a component\'s own error', 'api: TypeError: x is not a function (at lab/a.ts:1:2)', 'api: TypeError: x is not a function (at lab/a.ts:1:2)'],
    ['several destinations: each one\'s status', `api: ERR_HTTP_STATUS: ${URL} answered 503; audit: gave up after 3 attempts: ERR_HTTP_STATUS: ${URL} answered 422: "a; b: c"`, 'api: http 503; audit: http 422 (gave up after 3 attempts)'],
    ['a "; x: " in what an API answered is not another destination', `api: ERR_HTTP_STATUS: ${URL} answered 400: "a; b: c"`, 'api: http 400: "a; b: c"'],
    ['text of another form', 'the engine stopped uncleanly 3 times', 'the engine stopped uncleanly 3 times'],
  ])('%s', (_what, text, brief) => {
    expect(briefError(text, 200)).toBe(brief)
  })

  it('cuts what follows the status at the width, with an ellipsis; the status stays', () => {
    const shown = briefError(`epic-fhir: ERR_HTTP_STATUS: ${URL} answered 422: "${'x'.repeat(200)}"`, 80)
    expect(shown).toHaveLength(80)
    expect(shown).toMatch(/^epic-fhir: http 422: "x+…$/)
  })
})
