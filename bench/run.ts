// `npm run bench [name...]`: runs the benchmark scripts in bench/ one after another (each in its own
// process, so one's heap and sockets do not disturb the next) and prints their reports. Every figure
// is a ratio against a baseline measured in the same run; absolute numbers on a shared 2-core machine are noise.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const ALL = ['token-cache', 'store', 'store-postgres', 'pipeline', 'cluster']
const dir = fileURLToPath(new URL('.', import.meta.url))
const wanted = process.argv.slice(2).length ? process.argv.slice(2) : ALL
let failed = 0
for (const name of wanted) {
  const file = `${dir}${name}.ts`
  if (!existsSync(file)) {
    console.log(`\n## ${name}: not available (bench/${name}.ts missing)`)
    continue
  }
  console.log(`\n## ${name}`)
  const r = spawnSync(process.execPath, ['--import', 'tsx', file], { stdio: 'inherit', env: { ...process.env, WEIR_LOG_LEVEL: 'warn' } })
  if (r.status !== 0) { failed++; console.log(`bench ${name} failed with exit ${r.status}`) }
}
process.exitCode = failed ? 1 : 0
