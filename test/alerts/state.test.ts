import { describe, expect, it } from 'vitest'
import { step, type AlertState, type Transition } from '../../engine/alerts/index.ts'

/** Runs `step` over (time, active) observations and returns the notifications sent, as `time:transition`. */
function run(observations: Array<[number, boolean]>, h = { minIntervalMs: 1000, clearAfterMs: 100 }): string[] {
  let state: AlertState = { firing: false }
  const sent: string[] = []
  for (const [t, active] of observations) {
    const next: { state: AlertState; transition?: Transition } = step(state, active, t, h)
    if (next.transition) sent.push(`${t}:${next.transition}`)
    state = next.state
  }
  return sent
}

describe('alert state machine', () => {
  it.each([
    ['fires once and resolves once', [[0, false], [10, true], [20, true], [30, false], [200, false]], ['10:firing', '200:resolved']],
    ['a flap shorter than clearAfterMs stays one firing', [[0, true], [50, false], [100, true], [140, false], [200, true], [400, false], [600, false]], ['0:firing', '600:resolved']],
    ['a new firing right after a "resolved" is sent at once', [[0, true], [200, false], [400, false], [500, true], [900, true], [1000, true]], ['0:firing', '400:resolved', '500:firing']],
    ['a firing within minIntervalMs of a "resolved" resolves only after minIntervalMs clear', [[0, true], [200, false], [400, false], [500, true], [600, false], [800, false], [1599, false], [1600, false]], ['0:firing', '400:resolved', '500:firing', '1600:resolved']],
    ['a wave while that firing waits to resolve is the same firing', [[0, true], [200, false], [400, false], [500, true], [600, false], [1200, true], [1300, false], [2299, false], [2300, false]], ['0:firing', '400:resolved', '500:firing', '2300:resolved']],
    ['a firing minIntervalMs or more after a "resolved" resolves after clearAfterMs', [[0, true], [200, false], [400, false], [1400, true], [1500, false], [1600, false]], ['0:firing', '400:resolved', '1400:firing', '1600:resolved']],
  ] as Array<[string, Array<[number, boolean]>, string[]]>)('%s', (_what, observations, sent) => {
    expect(run(observations)).toEqual(sent)
  })

  it('resolves at once with clearAfterMs 0, and keeps since for the resolved notification', () => {
    const fired = step({ firing: false }, true, 5, { minIntervalMs: 0, clearAfterMs: 0 })
    expect(fired).toEqual({ state: { firing: true, since: 5, lastFiredAt: 5 }, transition: 'firing' })
    expect(step(fired.state, false, 9, { minIntervalMs: 0, clearAfterMs: 0 })).toEqual({ state: { firing: false, since: 5, lastFiredAt: 5, resolvedAt: 9 }, transition: 'resolved' })
  })
})
