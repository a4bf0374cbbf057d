/**
 * A refused inbound request: its status, the reason (logged; never containing a credential or
 * message content), its response headers (a challenge, Retry-After) and what the client is told
 * when that differs from the reason (details such as an internal URL stay in the log).
 */
export class Refusal {
  constructor(
    readonly status: number,
    readonly reason: string,
    readonly headers: Record<string, string> = {},
    readonly publicReason: string = reason,
  ) {}
}
