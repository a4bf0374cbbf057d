// Micro-benchmark (not a test): the cost of a cached getToken() against a Map lookup baseline.
// Run: npx tsx bench/token-cache.ts
import { startAuthorizationServer } from '../engine/embedded/authorization-server.ts'
import { createTokenProvider, TokenCache } from '../shared/oauth/index.ts'
import { Secret } from '../shared/secret.ts'

const N = 2_000_000

async function measure(label: string, fn: () => unknown): Promise<number> {
  for (let i = 0; i < 200_000; i++) await fn() // warm-up
  const runs: number[] = []
  for (let r = 0; r < 5; r++) {
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < N; i++) await fn()
    runs.push(Number(process.hrtime.bigint() - t0) / N)
  }
  runs.sort((a, b) => a - b)
  const median = runs[2]!
  console.log(`${label.padEnd(44)} ${median.toFixed(1).padStart(7)} ns/op (median of 5 × ${N.toLocaleString('en')})`)
  return median
}

const as = await startAuthorizationServer({ tokenLifetimeSec: 3600 })
as.registerClient({ clientId: 'bench', authMethod: 'client_secret_basic', secret: 'bench-secret-value' })
const provider = createTokenProvider('bench', { tokenUrl: as.tokenUrl, clientId: 'bench', clientAuth: { secret: new Secret('bench-secret-value') } }, { cache: new TokenCache() })
const token = await provider.getToken()

const map = new Map([['key', token]])
const baseline = await measure('baseline: await Map.get()', () => map.get('key'))
const cached = await measure('cached provider.getToken()', () => provider.getToken())
console.log(`cached getToken(): ${cached.toFixed(1)} ns (${(cached / 1000).toFixed(3)} µs; target < 1 µs: ${cached < 1000 ? 'met' : 'NOT met'}), ${(cached - baseline).toFixed(1)} ns above the baseline`)
console.log(`token requests during the run: ${provider.stats().tokenRequests} (expected 1)`)
await provider.close()
await as.close()
