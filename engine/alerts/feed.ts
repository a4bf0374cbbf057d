import { defineComponent, type Emit, type MessageInput, type Source } from '../../shared/component.ts'
import { errorCodes } from '../../shared/errors.ts'

/** The source of an internal alerts channel: the notifier hands it each notification. */
export interface FeedSource extends Source {
  send(input: MessageInput): Promise<void>
}

export const FEED_TYPE = 'weir-alerts-feed'

/** Not a built-in: only the alerts loader's registry knows it, so no channel file can name it. */
export const feedSourceDefinition = defineComponent({
  type: FEED_TYPE, kind: 'source',
  description: 'Notifications of the alerts notifier (internal).',
  configSchema: { type: 'object', additionalProperties: false, properties: {} },
  create(): FeedSource {
    let emit: Emit | undefined
    return {
      start(e) { emit = e },
      stop() { emit = undefined },
      async send(input) {
        if (!emit) throw new errorCodes.ERR_SHUTDOWN('the alerts channel is not running')
        await emit(input)
      },
    }
  },
})
