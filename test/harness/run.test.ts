import { describe, expect, it } from 'vitest'
import { containsSubset } from '../../engine/harness/match.ts'
import { loadChannelObject } from '../../engine/load.ts'

describe('containsSubset', () => {
  it.each([
    ['equal scalars', 1, 1, true],
    ['different scalars', 1, '1', false],
    ['null matches null only', null, null, true],
    ['null vs missing', undefined, null, false],
    ['object subset', { a: 1, b: { c: 2, d: 3 } }, { b: { c: 2 } }, true],
    ['missing key', { a: 1 }, { b: undefined }, true],
    ['missing key with a value', { a: 1 }, { b: 1 }, false],
    ['nested mismatch', { a: { b: 1 } }, { a: { b: 2 } }, false],
    ['arrays: same length, element-wise subset', [{ a: 1, x: 0 }, { b: 2 }], [{ a: 1 }, { b: 2 }], true],
    ['arrays: shorter expected fails', [1, 2], [1], false],
    ['arrays: order matters', [1, 2], [2, 1], false],
    ['array expected, object actual', { 0: 1 }, [1], false],
    ['object expected, array actual', [1], { 0: 1 }, false],
    ['object expected, null actual', null, {}, false],
    ['empty object matches any object', { a: 1 }, {}, true],
  ])('%s', (_name, actual, expected, result) => {
    expect(containsSubset(actual, expected)).toBe(result)
  })
})

// The http destination's baseUrlFromToken (Salesforce instance_url); its behaviour is proven by
// channels/salesforce-contacts.test.json, its configuration rules here.
describe('http destination: url and baseUrlFromToken', () => {
  const channel = (config: Record<string, unknown>) => ({
    name: 'c',
    credentials: { sf: { grant: 'static', token: 'test-material' } },
    source: { type: 'http-listener', config: { port: 0 } },
    destinations: [{ name: 'd', type: 'http', config }],
  })
  it.each([
    [{ url: '/services/data/v61.0/sobjects/Contact', baseUrlFromToken: 'instance_url', credential: 'sf' }, undefined],
    [{ url: '/services/data', credential: 'sf' }, 'a url starting with "/" requires baseUrlFromToken (e.g. "instance_url")'],
    [{ url: 'https://x.example/services/data', baseUrlFromToken: 'instance_url', credential: 'sf' }, 'with baseUrlFromToken, url must be a path starting with "/" (the base comes from the token response)'],
    [{ url: '/services/data', baseUrlFromToken: 'instance_url' }, 'baseUrlFromToken requires credential'],
  ])('%j', async (config, problem) => {
    const err = await loadChannelObject(channel(config), { file: 'c.json' }).then(() => undefined, (e: { problems?: Array<{ message: string }> }) => e)
    if (problem === undefined) expect(err).toBeUndefined()
    else expect(err?.problems?.map((p) => p.message)).toContain(problem)
  })
})
