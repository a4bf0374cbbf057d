/** The most of a token, discovery or metadata response body that is read (1 MiB). */
export const MAX_METADATA_BYTES = 1024 * 1024

/** A response body read up to a limit: the text, and whether the body went on past it. */
export interface BoundedBody {
  text: string
  /** True when the body was longer than the limit: reading stopped there and the connection was dropped. */
  truncated: boolean
}

/**
 * Reads a fetch Response body up to `maxBytes` and stops: past the limit the stream is cancelled
 * (undici then drops the connection), so a huge or endless body never sits in memory.
 */
export async function readBoundedBody(res: { body: ReadableStream<Uint8Array> | null }, maxBytes: number): Promise<BoundedBody> {
  if (!res.body) return { text: '', truncated: false }
  const reader = res.body.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    if (size + value.byteLength > maxBytes) {
      chunks.push(value.subarray(0, maxBytes - size))
      await reader.cancel().catch(() => undefined)
      return { text: Buffer.concat(chunks).toString('utf8'), truncated: true }
    }
    chunks.push(value)
    size += value.byteLength
  }
  return { text: Buffer.concat(chunks).toString('utf8'), truncated: false }
}
