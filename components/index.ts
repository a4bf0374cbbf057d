import type { ComponentDefinition } from '../shared/component.ts'
import httpListener from './sources/http-listener.ts'
import filePoller from './sources/file-poller.ts'
import scheduleSource from './sources/schedule.ts'
import mllpListener from './sources/mllp-listener.ts'
import match from './filters/match.ts'
import validate from './filters/validate.ts'
import map from './filters/map.ts'
import script from './filters/script.ts'
import hl7v2 from './filters/hl7v2.ts'
import httpDestination from './destinations/http.ts'
import fileDestination from './destinations/file.ts'
import mllpDestination from './destinations/mllp.ts'

/**
 * The built-in components: a static list, no import side effects. Add each new component here
 * (one import, one entry); the registry, the editor schema and the README reference follow.
 */
export const builtinComponents: ComponentDefinition[] = [
  httpListener, filePoller, scheduleSource, mllpListener,
  match, validate, map, script, hl7v2,
  httpDestination, fileDestination, mllpDestination,
]
