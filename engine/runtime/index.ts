export { startChannel, type ChannelHandle, type ChannelCounters, type ChannelState, type RuntimeDeps } from './channel.ts'
export { backoffDelay } from './backoff.ts'
export { CircuitBreaker, type BreakerState } from './breaker.ts'
