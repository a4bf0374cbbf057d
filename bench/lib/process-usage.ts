/**
 * CPU time and peak RSS of another process, read from /proc (Linux), so a benchmark can measure a system
 * under test it starts as a user would (`node bin/weir.js run …`) without instrumenting it. The figures
 * match the process's own `process.cpuUsage()` (all threads, user + system) and `resourceUsage().maxRSS`.
 */
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'

export interface ProcessUsage {
  /** User + system CPU time of all its threads so far (ms; the kernel counts in clock ticks, usually 10 ms). */
  cpuMs: number
  /** Peak resident set size so far (KB, VmHWM). */
  peakRssKb: number
  /** Current resident set size (KB, VmRSS). */
  rssKb: number
}

let ticksPerSecond: number | undefined
const clockTicks = () => {
  if (ticksPerSecond === undefined) {
    try { ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100 } catch { ticksPerSecond = 100 }
  }
  return ticksPerSecond
}

/** Reads the usage of `pid`; throws when /proc has no such process (it exited, or this is not Linux). */
export function processUsage(pid: number): ProcessUsage {
  // Fields after the command name, which is in parentheses and may contain spaces: state is field 3, utime 14, stime 15.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const ticks = Number(fields[11]) + Number(fields[12])
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN)
  return { cpuMs: (ticks * 1000) / clockTicks(), peakRssKb: kb('VmHWM'), rssKb: kb('VmRSS') }
}

/** CPU time (ms) of every PostgreSQL process on this machine so far: the server's backends, WAL writer, checkpointer… */
export function postgresCpuMs(): number {
  let ms = 0
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'postgres') ms += processUsage(Number(pid)).cpuMs
    } catch { /* it exited meanwhile */ }
  }
  return ms
}
