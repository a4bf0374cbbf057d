import { parseArgs } from 'node:util'
import type { CommandIO } from '../cli-io.ts'
import { errorCodes } from '../../shared/errors.ts'
import type { EngineStatus } from '../../shared/store/postgres/engines.ts'
import { openPostgresFor, storeOptions, storeUrlOf } from '../store.ts'

export const summary = 'show the engines of a cluster sharing one PostgreSQL store'
export const usage = `usage: weir cluster status [--store postgres://…] [--json]

Lists every engine of the cluster: its id, host, process, version, heartbeat age, the messages
it has claimed and the pollers it leads. An engine that stopped cleanly has left; one that died
shows as expired until another engine takes its claims over (within its lease).

  --store URL   the cluster's PostgreSQL store (default $WEIR_STORE)
  --store-password-file F   a file whose first line is the store's password
  --json        print the engines as JSON

exit status: 0 when every engine listed is live, 1 when one has expired, 2 on bad usage`

const age = (ms: number) => (ms < 10_000 ? `${(ms / 1000).toFixed(1)}s` : `${Math.round(ms / 1000)}s`)

/** The columns of `weir cluster status` (and the dashboard's cluster page). */
export const ENGINE_COLUMNS = ['ENGINE', 'HOST', 'PID', 'VERSION', 'HEARTBEAT', 'STATE', 'CLAIMED', 'LEADS'] as const

/** One engine as a row of ENGINE_COLUMNS: heartbeat as `1.2s ago`, state `live` or `expired`, leads joined (`-` for none). */
export function engineRow(e: EngineStatus): string[] {
  return [e.id, e.host, String(e.pid), e.version, `${age(e.heartbeatAgeMs)} ago`, e.expired ? 'expired' : 'live', String(e.claimed), e.leads.join(', ') || '-']
}

export async function run(args: string[], io: CommandIO): Promise<number> {
  const [sub, ...rest] = args
  const { values } = parseArgs({ args: rest, options: { ...storeOptions, json: { type: 'boolean', default: false } } })
  if (sub !== 'status') {
    io.err(usage)
    return 2
  }
  const url = storeUrlOf(values, io)
  if (url === undefined) throw new errorCodes.ERR_USAGE('weir cluster needs the cluster\'s store: --store postgres://… or $WEIR_STORE')
  const store = await openPostgresFor({ url, owner: false, ...(values['store-password-file'] ? { passwordFile: values['store-password-file'] } : {}) })
  try {
    const engines = await store.cluster()
    if (values.json) io.out(JSON.stringify(engines.map((e) => ({ ...e, startedAt: new Date(e.startedAt).toISOString() }))))
    else if (engines.length === 0) io.out('no engines')
    else {
      const rows: string[][] = [[...ENGINE_COLUMNS], ...engines.map(engineRow)]
      const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
      for (const r of rows) io.out(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  '))
    }
    return engines.some((e) => e.expired) ? 1 : 0
  } finally {
    await store.close()
  }
}
