// Tests start `node bin/weir.js` as users do, and it runs the compiled code in dist/: build it
// first when it is missing or older than the sources (an edit since the last `npm run build`).
import { build, distProblem } from '../bin/build.js'

export default function setup(): void {
  if (distProblem() === undefined) return
  if (build() !== 0) throw new Error('npm run build failed: the tests that start bin/weir.js need dist/')
}
