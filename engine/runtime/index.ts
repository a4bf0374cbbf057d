export { startChannel, type ChannelHandle, type ChannelCounters, type ChannelState, type ChannelStatus, type DestinationStatus, type RuntimeDeps } from './channel.ts'
export { backoffDelay } from './backoff.ts'
export { CircuitBreaker, type BreakerState } from './breaker.ts'
export type { AttemptOutcome, RuntimeObserver } from './observer.ts'
