import { readFile } from 'node:fs/promises'
import { resolve, dirname } from 'node:path'
import type { JsonSchema } from '../../shared/component.ts'
import { compileSchema, validateCollectingSecrets } from '../../shared/config/ajv.ts'
import { ajvProblems } from '../../shared/config/problems.ts'
import { displayPath, parseJsonWithLocation } from '../../shared/config/load.ts'
import { ConfigError } from '../../shared/errors.ts'
import type { ApiRoute } from '../embedded/api.ts'
import { KEY_ALGS, type KeyAlg } from '../key-rotation.ts'
import { mllpExpectationSchema, mllpReceiverSchema, mllpSendProperties, type MllpExpectation, type MllpScript, type MllpSendStep } from './mllp.ts'

const answer: JsonSchema = {
  type: 'object', additionalProperties: false,
  properties: {
    status: { type: 'integer', minimum: 100, maximum: 599, description: 'HTTP status (default 200).' },
    json: { description: 'JSON body of the answer.' },
    body: { type: 'string', description: 'Raw body of the answer (instead of json).' },
    headers: { type: 'object', additionalProperties: { type: 'string' }, description: 'Response headers, e.g. Retry-After.' },
    delayMs: { type: 'integer', minimum: 0, maximum: 60_000, description: 'Answer this late (slow-API faults).' },
  },
}

const route: JsonSchema = {
  type: 'object', additionalProperties: false, required: ['path'],
  properties: {
    method: { type: 'string', description: 'HTTP method; any when omitted.' },
    path: { type: 'string', pattern: '^/', description: 'Path, exact, or ending in * for a prefix.' },
    answers: { type: 'array', items: answer, description: 'Answers in order; the last repeats. Default: 200 {}.' },
    auth: { type: 'boolean', description: 'Require a valid access token from the embedded authorization server (default true).' },
  },
}

const tokenFailure: JsonSchema = {
  type: 'object', additionalProperties: false, required: ['status'],
  properties: {
    status: { type: 'integer', minimum: 400, maximum: 599, description: 'Status the token endpoint answers.' },
    credential: { type: 'string', minLength: 1, description: 'Only the token requests of this credential, by its name in the channel (and of a credential of the same client id at the same token endpoint, which the provider cannot tell from it); default: whichever credential asks.' },
    count: { type: 'integer', minimum: 1, default: 1, description: 'How many token requests fail.' },
    retryAfter: { type: 'integer', minimum: 0, description: 'Retry-After (seconds).' },
    delayMs: { type: 'integer', minimum: 0, description: 'Answer this late.' },
    body: { type: 'string', description: 'Raw body. Default: the OAuth error a token endpoint answers with the status (RFC 6749 §5.2): `{"error":"invalid_client"}` for 401, `{"error":"temporarily_unavailable"}` for 5xx, else `{"error":"invalid_request"}`.' },
  },
}

const requestExpectation: JsonSchema = {
  type: 'object', additionalProperties: false,
  properties: {
    method: { type: 'string', description: 'Method the request used.' },
    path: { type: 'string', description: 'Path of the request (exact).' },
    query: { type: 'object', additionalProperties: { type: 'string' }, description: 'Query parameters, each matched as a regular expression.' },
    headers: { type: 'object', additionalProperties: { type: 'string' }, description: 'Headers (lowercase names), each matched as a regular expression. Credentials are recorded as "Bearer [REDACTED]".' },
    json: { description: 'A subset the JSON body must contain.' },
    count: { type: 'integer', minimum: 0, description: 'How many received requests match (default: at least one).' },
  },
}

const deliveryExpectation: JsonSchema = {
  type: 'object', additionalProperties: false,
  properties: {
    count: { type: 'integer', minimum: 0, description: 'How many deliveries match the other fields (default: at least one). A delivery is a call of the destination\'s `deliver` that returned; a failed attempt (it threw) does not count.' },
    body: { description: 'A subset the delivered body must contain: JSON for a JSON message, the exact text for a text one.' },
    bodyMatches: { type: 'string', description: 'Regular expression the delivered body must match: the text of a text message, the JSON of a JSON one.' },
    contentType: { type: 'string', description: 'Regular expression the delivered message\'s content type must match.' },
  },
}

const statusName = { enum: ['delivered', 'filtered', 'error', 'queued', 'retrying', 'in-flight'] }

/** A `keepUrls` entry: http(s), a loopback host, an optional port, no path. */
const LOOPBACK_ORIGIN = /^https?:\/\/(127\.0\.0\.1|localhost|\[::1\])(:[0-9]{1,5})?\/?$/

/** What a `keepUrls` entry must be, in the words of the problem reported against it. */
const KEEP_URL = 'must be a loopback origin such as "http://127.0.0.1:18080" (http or https; 127.0.0.1, localhost or [::1]; an optional port; no path)'

/** What a send step's `fileName` must be, in the words of the problem reported against it. */
export const PLAIN_FILE_NAME = 'must be a plain file name (no "/" or "\\", not "." or "..")'

const step: JsonSchema = {
  type: 'object', additionalProperties: false, minProperties: 1, maxProperties: 1,
  description: 'One action; exactly one key.',
  properties: {
    send: {
      type: 'object', additionalProperties: false, oneOf: [{ required: ['body'], properties: { body: {} } }, { required: ['mllp'], properties: { mllp: {} } }],
      description: 'Feed one message to the source: an HTTP POST for http-listener, a file for file-poller (both with `body`), an MLLP frame for mllp-listener (with `mllp`).',
      properties: {
        ...mllpSendProperties,
        body: { description: 'Message body: JSON, or a string sent as is.' },
        contentType: { type: 'string', description: 'Content type (default application/json for JSON bodies, text/plain for strings).' },
        headers: { type: 'object', additionalProperties: { type: 'string' }, description: 'Extra request headers (http-listener).' },
        fileName: { type: 'string', pattern: '^(?!\\.\\.?$)[^/\\\\]+$', description: 'File name (file-poller): a plain name, written into the poller\'s directory; no `/` or `\\`, not `.` or `..`.' },
        expectStatus: { type: 'integer', description: 'Status the http-listener must answer (default 202).' },
      },
    },
    tick: { const: true, description: 'Run one tick of a schedule source now.' },
    advanceSec: { type: 'number', minimum: 0, description: 'Move the clock of the token client and the authorization server forward, without waiting.' },
    revokeTokens: { const: true, description: 'Revoke every access token issued so far.' },
    restart: { const: true, description: 'Stop the channel and start it again over the same data directory (the message store and token store survive).' },
    waitMs: { type: 'integer', minimum: 0, maximum: 30_000, description: 'Wait (real time) for background work such as a background token refresh.' },
    rotateKeys: {
      type: 'object', additionalProperties: false, required: ['credential'],
      description: 'Rotate a credential\'s signing key as `weir keys rotate` does (a new key in its key list, signing from now + delaySec, published in its JWK Set at once), then restart the channel with it.',
      properties: {
        credential: { type: 'string', minLength: 1, description: 'Credential name.' },
        alg: { type: 'string', enum: [...KEY_ALGS], description: 'Algorithm of the new key (default: the current key\'s).' },
        delaySec: { type: 'integer', minimum: 0, default: 86_400, description: 'Publication delay: the new key signs this long after the rotation (fake time; move it with advanceSec).' },
        assertion: { type: 'boolean', description: 'Rotate the jwt-bearer assertion key instead of the client assertion key.' },
      },
    },
  },
}

const tokenExpectation: JsonSchema = {
  type: 'object', additionalProperties: false,
  properties: {
    credential: { type: 'string', minLength: 1, description: 'Only the requests of this credential, by its name in the channel (`crm`, not its client id); default all. Each token endpoint (or issuer) the channel names is a tenant of the embedded server with clients of its own, so one client id at two endpoints is two clients; two credentials of one client id at one endpoint count together, as the provider cannot tell them apart.' },
    count: { type: 'integer', minimum: 0, description: 'How many. Without it, grant, authMethod, scope and assertion also require at least one request to check (accepted ones for authMethod and scope).' },
    grant: { type: 'string', description: 'Grant type every one used (client_credentials, urn:ietf:params:oauth:grant-type:jwt-bearer, refresh_token).' },
    authMethod: { type: 'string', description: 'Client authentication every accepted one used (client_secret_basic, client_secret_post, private_key_jwt, none…).' },
    scope: { type: 'string', description: 'Scope every successful one requested, from the form or else the assertion\'s `scope` claim (regular expression).' },
    assertion: {
      type: 'object', additionalProperties: false,
      description: 'A subset every assertion (client assertion or jwt-bearer assertion) must contain.',
      properties: {
        header: { type: 'object', description: 'JOSE header subset, e.g. { "alg": "PS256" }.' },
        claims: { type: 'object', description: 'Claims subset, e.g. { "iss": "…", "scope": "…" }.' },
      },
    },
    errors: { type: 'integer', minimum: 0, description: 'How many were refused.' },
    error: { type: 'string', description: 'Regular expression some refused one\'s `error: error_description` must match.' },
    spentRefreshTokens: { type: 'integer', minimum: 0, description: 'How often a spent (already rotated) refresh token was presented (the whole case, all credentials).' },
  },
}

const clientRegistration: JsonSchema = {
  type: 'object', additionalProperties: false,
  properties: {
    allowedAlgs: { type: 'array', items: { type: 'string' }, description: 'Assertion algorithms the provider accepts for this client.' },
    scopes: { type: 'array', items: { type: 'string' }, description: 'Scopes the client is registered for; others are refused with invalid_scope.' },
    assertionAudiences: { type: 'array', items: { type: 'string' }, description: 'Accepted assertion audiences besides the token endpoint.' },
    secret: { type: 'string', minLength: 1, description: 'The client secret the provider has on record (default: the channel\'s); a different one makes the channel\'s secret wrong (invalid_client).' },
    importRefreshToken: { const: true, description: 'Issue a refresh token for this client and import it into the case\'s encrypted token store, as `weir credentials import` does after a user consented outside the engine.' },
    tokenResponse: { type: 'object', description: 'Extra fields of the token response; the string "{api}" is replaced by the embedded API URL (Salesforce instance_url).' },
    jwksUri: { const: true, description: 'Register the client by the URL of its JWK Set, served by the harness as `weir run --jwks` serves it, instead of its public keys: the server fetches the set on first use, caches it, and fetches it again on an unknown kid (at most once a minute).' },
  },
}

const expectation: JsonSchema = {
  type: 'object', additionalProperties: false,
  properties: {
    requests: { type: 'array', items: requestExpectation, description: 'Requests the embedded API must have received.' },
    requestCount: { type: 'integer', minimum: 0, description: 'Total requests the embedded API received.' },
    messages: {
      type: 'array', description: 'Each message the source accepted, in order: its status and per-destination statuses as the steps left them.',
      items: {
        type: 'object', additionalProperties: false,
        properties: {
          status: { ...statusName, description: 'Status of the message: `delivered`, `filtered` or `error` once finished; `retrying` while a delivery waits for its next attempt (a credential the token endpoint refuses, a destination\'s circuit breaker open); `queued` while it waits its turn.' },
          destinations: { type: 'object', additionalProperties: statusName, description: 'Status per destination name (`retrying`: the delivery waits for its next attempt).' },
          error: { type: 'string', description: 'Regular expression the message\'s last error must match: why it is in error, or a retrying delivery\'s last attempt error.' },
          filteredBy: { type: 'string', description: 'Regular expression the filter that dropped the message must match, named as the message log names it: its place, its name if it has one, and its type (`filters/0 "admissions-only" (match)`). A message no filter dropped fails it.' },
        },
      },
    },
    tokenRequests: {
      description: 'Token requests the authorization server received: one expectation, or a list (e.g. one per credential).',
      anyOf: [tokenExpectation, { type: 'array', minItems: 1, items: tokenExpectation }],
    },
    logs: { type: 'array', items: { type: 'string' }, description: 'Regular expressions; each must match some log line.' },
    jwksFetches: { type: 'integer', minimum: 0, description: 'How often the authorization server fetched the JWK Set of clients registered with `jwksUri`.' },
    deliveries: {
      type: 'object',
      description: 'What each destination, built-in or your own, was handed, by destination name: one expectation or a list. Works for any destination: the harness records every call of its `deliver`.',
      additionalProperties: { anyOf: [deliveryExpectation, { type: 'array', minItems: 1, items: deliveryExpectation }] },
    },
    mllp: mllpExpectationSchema,
    files: {
      type: 'array', description: 'Files the channel must have written: by the `file` destination, relative to its output directory, and by any component under its `ctx.channelDir`, relative to the channel directory.',
      items: {
        type: 'object', additionalProperties: false, required: ['path'],
        properties: { path: { type: 'string', description: 'A regular expression over the paths written (relative, with / separators).' }, json: { description: 'A subset its JSON content must contain.' }, count: { type: 'integer', minimum: 0, description: 'How many files match (default at least one).' } },
      },
    },
  },
}

export const testFileSchema: JsonSchema = {
  type: 'object', additionalProperties: false, required: ['channel', 'cases'],
  properties: {
    $schema: { type: 'string', description: 'Editor schema, e.g. "../schema/channel-test.schema.json".' },
    channel: { type: 'string', description: 'The channel file under test, relative to this file.' },
    description: { type: 'string', description: 'What the test proves.' },
    env: { type: 'object', additionalProperties: { type: 'string' }, description: 'Values for the channel\'s $env references (test material only).' },
    server: {
      type: 'object', additionalProperties: false, default: {},
      description: 'The embedded authorization server.',
      properties: {
        tokenLifetimeSec: { type: 'integer', minimum: 1, default: 3600, description: 'Lifetime of issued access tokens.' },
        clients: {
          type: 'object', default: {},
          description: 'Registration details per credential name, as the provider has them (what the channel must match).',
          additionalProperties: clientRegistration,
        },
      },
    },
    keepUrls: {
      type: 'array', uniqueItems: true, items: { type: 'string', pattern: LOOPBACK_ORIGIN.source },
      description: 'Loopback origins (e.g. "http://127.0.0.1:18080") whose URLs in the channel\'s components are left as written: the cases send to the service listening there. Every other URL, loopback or not, is pointed at the embedded API. A case whose `requests` or `requestCount` finds the API without a request names each kept origin.',
    },
    mllp: mllpReceiverSchema,
    api: { type: 'array', items: route, default: [], description: 'Routes of the embedded API for every case. In answers (json, body, headers) the string "{api}" is replaced by the embedded API URL, e.g. for absolute next-page links.' },
    cases: {
      type: 'array', minItems: 1, description: 'The cases, each run on fresh servers in a sandbox of its own: a fresh data directory (`ctx.dataDir`), input and output directories, and a copy of the channel directory (`ctx.channelDir`), so that no component writes next to the real channel.',
      items: {
        type: 'object', additionalProperties: false, required: ['name', 'steps', 'expect'],
        properties: {
          name: { type: 'string', minLength: 1, description: 'Case name, shown in the report.' },
          api: { type: 'array', items: route, description: 'Routes for this case (replace the file\'s).' },
          mllp: { ...mllpReceiverSchema, description: 'The embedded MLLP receivers\' script for this case (replaces the file\'s `mllp` as a whole, `answers` and `destinations`).' },
          server: {
            type: 'object', additionalProperties: false,
            description: 'Registration changes for this case only, merged per credential over the file\'s (e.g. a rotated secret, fewer scopes).',
            properties: { clients: { type: 'object', additionalProperties: clientRegistration, description: 'Per credential name.' } },
          },
          tokenFailures: { type: 'array', items: tokenFailure, description: 'Token endpoint faults, in order, before it answers normally: a token request gets the first fault left that applies to it (every request, or its `credential`\'s).' },
          steps: { type: 'array', minItems: 1, items: step, description: 'What happens, in order.' },
          expect: { ...expectation, description: 'What must hold once the steps have run and the channel is idle or waits on an outage.' },
        },
      },
    },
  },
}

/** The editor schema of `*.test.json` files: schema/channel-test.schema.json, written by `npm run docs`. */
export function testEditorSchema(): JsonSchema {
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: 'https://weir.dev/schema/channel-test.schema.json',
    title: 'Weir channel test',
    description: 'A `weir test` file: the channel under test, the embedded servers, and the cases. Generated by `npm run docs`; do not edit.',
    ...testFileSchema,
  }
}

export interface SendStep { body: unknown; contentType?: string; headers?: Record<string, string>; fileName?: string; expectStatus?: number }
export interface RotateKeysStep { credential: string; alg?: KeyAlg; delaySec: number; assertion?: boolean }
export type Send = SendStep | MllpSendStep
export type Step = { send: Send } | { tick: true } | { advanceSec: number } | { revokeTokens: true } | { restart: true } | { waitMs: number } | { rotateKeys: RotateKeysStep }

export interface RequestExpectation { method?: string; path?: string; query?: Record<string, string>; headers?: Record<string, string>; json?: unknown; count?: number }
export interface TokenExpectation {
  credential?: string
  count?: number
  grant?: string
  authMethod?: string
  scope?: string
  assertion?: { header?: Record<string, unknown>; claims?: Record<string, unknown> }
  errors?: number
  error?: string
  spentRefreshTokens?: number
}
export interface DeliveryExpectation { count?: number; body?: unknown; bodyMatches?: string; contentType?: string }
export interface Expectation {
  requests?: RequestExpectation[]
  requestCount?: number
  messages?: Array<{ status?: string; destinations?: Record<string, string>; error?: string; filteredBy?: string }>
  tokenRequests?: TokenExpectation | TokenExpectation[]
  logs?: string[]
  jwksFetches?: number
  files?: Array<{ path: string; json?: unknown; count?: number }>
  deliveries?: Record<string, DeliveryExpectation | DeliveryExpectation[]>
  mllp?: MllpExpectation
}
export interface TestCase {
  name: string
  api?: ApiRoute[]
  mllp?: MllpScript
  server?: { clients?: Record<string, ClientRegistration> }
  tokenFailures?: Array<{ status: number; credential?: string; count: number; retryAfter?: number; delayMs?: number; body?: string }>
  steps: Step[]
  expect: Expectation
}
export interface ClientRegistration { allowedAlgs?: string[]; scopes?: string[]; assertionAudiences?: string[]; secret?: string; importRefreshToken?: true; tokenResponse?: Record<string, unknown>; jwksUri?: true }
export interface TestFile {
  file: string
  displayName: string
  channel: string
  description?: string
  env: Record<string, string>
  server: { tokenLifetimeSec: number; clients: Record<string, ClientRegistration> }
  api: ApiRoute[]
  /** Loopback origins whose URLs the harness leaves as the channel wrote them. */
  keepUrls?: string[]
  mllp?: MllpScript
  cases: TestCase[]
}

/** What a value at `pointer` that does not match its pattern must be, said in words (a pattern says little to a reader). */
function patternMeaning(pointer: string): string | undefined {
  if (/\/send\/fileName$/.test(pointer)) return PLAIN_FILE_NAME
  if (/^\/keepUrls\/\d+$/.test(pointer)) return KEEP_URL
  return undefined
}

/** Reads and validates a `.test.json` file; errors carry file and JSON pointer like channel errors. */
export async function loadTestFile(path: string): Promise<TestFile> {
  const file = resolve(path)
  const displayName = displayPath(file)
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch {
    throw new ConfigError([{ file: displayName, pointer: '', message: 'file not found' }])
  }
  const data = parseJsonWithLocation(text, displayName) as Record<string, unknown>
  const res = validateCollectingSecrets(compileSchema(testFileSchema), data)
  if (!res.valid) {
    const problems = ajvProblems(res.errors, displayName, '', data).map((p) => p.message.startsWith('must match pattern') ? { ...p, message: patternMeaning(p.pointer) ?? p.message } : p)
    throw new ConfigError(problems, res.errors)
  }
  return { ...(data as unknown as Omit<TestFile, 'file' | 'displayName' | 'env'>), env: (data.env as Record<string, string>) ?? {}, file, displayName, channel: resolve(dirname(file), String(data.channel)) }
}
