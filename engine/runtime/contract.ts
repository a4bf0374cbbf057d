import type { ComponentInstanceByKind, ComponentKind, Message } from '../../shared/component.ts'
import { displayPath } from '../../shared/config/load.ts'
import { componentLabel, createFailure, instanceProblem, kindOf } from '../../shared/config/registry.ts'
import type { LoadedChannel, LoadedComponent } from '../../shared/config/types.ts'
import { ConfigError, isWeirError } from '../../shared/errors.ts'
import type { Logger } from '../../shared/log/index.ts'

// The component contract as the runtime holds a channel's components to it: the instance each
// `create()` returns (checked at start) and what a filter's `process()` returns (checked per message).

/** What the runtime knows of an instance it created: its component's type and its channel's directory. */
interface InstanceOrigin {
  type: string
  dir: string
  /** The entry's `name` in the channel file, when it has one. */
  name?: string
}
const instances = new WeakMap<object, InstanceOrigin>()

/** The type and channel directory of an instance `createInstance` made; undefined for any other. */
export function originOf(instance: object): InstanceOrigin | undefined {
  return instances.get(instance)
}

/**
 * Creates a component's instance, refusing the channel's start when `create()` throws or returns an
 * instance without the methods of its kind. Either is the user's to fix: a `ConfigError` whose
 * problem (code ERR_COMPONENT_INVALID) names the channel file, the component's pointer and the
 * module, printed in one line by `weir run` and reported as the case's failure by `weir test`. The
 * stack goes to the log, at debug level. Errors about the engine (stopping, its store) pass as they are.
 */
export async function createInstance<K extends ComponentKind>(channel: LoadedChannel, c: LoadedComponent<K>, create: () => unknown, log: Logger): Promise<ComponentInstanceByKind[K]> {
  const where = componentLabel(c.definition)
  let instance: unknown
  try {
    instance = await create()
  } catch (e) {
    log.debug({ err: e, component: c.pointer }, `${where}: create() failed`)
    const failure = createFailure(e, where, channel.dir)
    if (isWeirError(failure) && failure.code === 'ERR_COMPONENT_INVALID') throw atPointer(channel, c, failure.message, e)
    throw failure
  }
  const problem = instanceProblem(c.definition.kind, instance)
  if (problem) throw atPointer(channel, c, `${where}: ${problem}`)
  instances.set(instance as object, { type: c.definition.type, dir: channel.dir, ...(c.name !== undefined ? { name: c.name } : {}) })
  return instance as ComponentInstanceByKind[K]
}

function atPointer(channel: LoadedChannel, c: LoadedComponent, message: string, cause?: unknown): ConfigError {
  const err = new ConfigError([{ file: displayPath(channel.file), pointer: c.pointer, message, code: 'ERR_COMPONENT_INVALID' }])
  if (cause !== undefined) Object.defineProperty(err, 'cause', { value: cause, enumerable: false, writable: true, configurable: true })
  return err
}

const isMessageShaped = (v: unknown): v is Partial<Message> & { body: unknown } => typeof v === 'object' && v !== null && !Array.isArray(v) && 'body' in v

/** A message a filter returned, with what it left out or got wrong (content type, attributes) and what the runtime owns (id, channel, receipt time) taken from its input. */
function asMessage(r: Partial<Message> & { body: unknown }, input: Message): Message {
  // The common case (withBody, or the input itself): nothing to take from the input, no copy.
  if (r.id === input.id && r.channel === input.channel && r.receivedAt === input.receivedAt && typeof r.contentType === 'string' && r.attributes === input.attributes) return r as Message
  return {
    id: input.id,
    channel: input.channel,
    body: r.body,
    contentType: typeof r.contentType === 'string' ? r.contentType : input.contentType,
    attributes: typeof r.attributes === 'object' && r.attributes !== null && !Array.isArray(r.attributes) ? r.attributes : input.attributes,
    receivedAt: input.receivedAt,
  }
}

const returned = (v: unknown) => (typeof v === 'object' && v !== null && !Array.isArray(v) ? 'an object without "body"' : kindOf(v))

/**
 * What a filter's `process()` returned, as the message's parts: `null` drops it (none), an array of
 * messages splits it, a message (an object with `body`) continues. Anything else (`undefined`, a
 * forgotten `return`, included) is the reason the message goes to error.
 */
export function filterOutput(r: unknown, input: Message): Message[] | { wrong: string } {
  if (r === null) return []
  if (isMessageShaped(r)) return [asMessage(r, input)]
  let got = returned(r)
  if (Array.isArray(r)) {
    const bad = r.findIndex((x) => !isMessageShaped(x))
    if (bad < 0) return r.map((x: Partial<Message> & { body: unknown }) => asMessage(x, input))
    got = `an array whose item ${bad} is ${returned(r[bad])}`
  }
  return { wrong: `process() returned ${got}; return the message, null to drop it, or an array of messages` }
}
