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
    ['a second firing within minIntervalMs waits, then fires if the condition holds', [[0, true], [200, false], [400, false], [500, true], [900, true], [1000, true]], ['0:firing', '400:resolved', '1000:firing']],
    ['a condition that clears before minIntervalMs ends is never sent again', [[0, true], [200, false], [400, false], [500, true], [700, false], [1500, false]], ['0:firing', '400:resolved']],
  ] as Array<[string, Array<[number, boolean]>, string[]]>)('%s', (_what, observations, sent) => {
    expect(run(observations)).toEqual(sent)
  })

  it('resolves at once with clearAfterMs 0, and keeps since for the resolved notification', () => {
    const fired = step({ firing: false }, true, 5, { minIntervalMs: 0, clearAfterMs: 0 })
    expect(fired).toEqual({ state: { firing: true, since: 5, lastFiredAt: 5 }, transition: 'firing' })
    expect(step(fired.state, false, 9, { minIntervalMs: 0, clearAfterMs: 0 })).toEqual({ state: { firing: false, since: 5, lastFiredAt: 5 }, transition: 'resolved' })
  })
})
