import { randomFillSync } from 'node:crypto'

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'

// Random bytes drawn from the CSPRNG in blocks (one call per 409 ids rather than one per id).
const POOL = Buffer.allocUnsafe(4096)
let poolOffset = POOL.length

/** A ULID-shaped id (48-bit time + 80 random bits, Crockford base32): sortable by time, unique without coordination. */
export function newMessageId(now = Date.now()): string {
  let t = now
  let time = ''
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[t % 32]! + time
    t = Math.floor(t / 32)
  }
  if (poolOffset + 10 > POOL.length) {
    randomFillSync(POOL)
    poolOffset = 0
  }
  const start = poolOffset
  poolOffset += 10
  let rand = ''
  // 80 bits → 16 base32 chars: take 5 bits at a time.
  let acc = 0
  let bits = 0
  for (let i = start; i < start + 10; i++) {
    acc = (acc << 8) | POOL[i]!
    bits += 8
    while (bits >= 5) {
      bits -= 5
      rand += ALPHABET[(acc >> bits) & 31]!
    }
    acc &= (1 << bits) - 1
  }
  return time + rand
}
