// Soak: many mixed jobs (normal, failing, timed out, aborted, spawn errors, leftovers, escaped
// daemons), then check that descriptors, zombie children and RSS are back where they were, that no
// process of a job is left (supervisors and daemons included), and that the fork server did not grow.
//   node --expose-gc scripts/soak.mjs [jobs=10000] [concurrency=16]
import { readdirSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'

const require = createRequire(import.meta.url)
const { LocalWorkerAdapter } = require('../index.js')

export function openFds() {
  return readdirSync('/proc/self/fd').length
}

/** Our children that have exited but were never waited for. */
export function zombieChildren() {
  const zombies = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      if (state === 'Z' && Number(ppid) === process.pid) zombies.push(Number(name))
    } catch {}
  }
  return zombies
}

/** Our live descendants (children, theirs, ...), by pid: { comm, state }. */
export function descendants() {
  const processes = new Map()
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
      processes.set(Number(name), { ppid: Number(ppid), state, comm })
    } catch {}
  }
  const mine = new Map()
  for (const [pid, info] of processes) {
    for (let up = info.ppid, depth = 0; up > 1 && depth < 64; up = processes.get(up)?.ppid ?? 0, depth++) {
      if (up === process.pid) {
        mine.set(pid, { comm: info.comm, state: info.state })
        break
      }
    }
  }
  return mine
}

/** Resident size of our fork server (kB), if one runs. */
export function forkServerRssKb() {
  for (const [pid, { comm }] of descendants()) {
    if (comm !== 'lw-forkserver') continue
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    return Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1])
  }
  return null
}

const kinds = [
  (a) => a.execute({ command: 'sh', args: ['-c', 'echo out; echo err >&2'] }),
  (a) => a.execute({ command: 'false' }),
  (a) => a.execute({ command: 'sleep', args: ['5'], timeout: 20 }),
  (a) => {
    const controller = new AbortController()
    setTimeout(() => controller.abort(), 5)
    return a.execute({ command: 'sleep', args: ['5'], signal: controller.signal })
  },
  (a) => a.execute({ command: 'lw-soak-no-such-command' }),
  (a) => a.execute({ command: 'sh', args: ['-c', 'sleep 5 & echo leftover'] }),
  // Daemons that leave the job's session: a supervisor ends them with the job.
  (a) => a.execute({ command: 'sh', args: ['-c', '( setsid sleep 5 & ) ; setsid sleep 5 & echo daemons'] }),
]

async function runJobs(adapter, total, concurrency) {
  let next = 0
  const outcomes = {}
  const worker = async () => {
    while (next < total) {
      const i = next++
      const outcome = await kinds[i % kinds.length](adapter).then(
        (r) => `exit ${r.exitCode}`,
        (e) => e.code,
      )
      outcomes[outcome] = (outcomes[outcome] ?? 0) + 1
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return outcomes
}

const settleMemory = async () => {
  for (let i = 0; i < 3; i++) {
    globalThis.gc?.()
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** Runs `total` mixed jobs; returns the figures before and after. */
export async function soak(total = 10_000, concurrency = 16, warmup = 2000) {
  const adapter = new LocalWorkerAdapter({ killGracePeriod: 1000 })
  // Warm up: the runtime's threads, malloc's per-thread arenas and V8's code for these
  // paths grow RSS by ~8 MB over the first few thousand jobs, then stay flat.
  await runJobs(adapter, warmup, concurrency)
  await settleMemory()
  const before = { fds: openFds(), rssKb: Math.round(process.memoryUsage().rss / 1024), forkServerRssKb: forkServerRssKb() }
  const started = performance.now()
  const outcomes = await runJobs(adapter, total, concurrency)
  const seconds = (performance.now() - started) / 1000
  await settleMemory()
  const after = { fds: openFds(), rssKb: Math.round(process.memoryUsage().rss / 1024), forkServerRssKb: forkServerRssKb() }
  // Everything of the jobs is gone: only the fork server and its spare supervisors (waiting for
  // the next jobs) remain below us.
  const standby = new Set(['lw-forkserver', 'lw-spare'])
  const left = [...descendants()].filter(([, { comm }]) => !standby.has(comm)).map(([pid, info]) => ({ pid, ...info }))
  return { total, seconds, outcomes, before, after, zombies: zombieChildren(), left }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const total = Number(process.argv[2] ?? 10_000)
  const concurrency = Number(process.argv[3] ?? 16)
  const report = await soak(total, concurrency)
  console.log(JSON.stringify(report, null, 2))
  const grewKb = report.after.rssKb - report.before.rssKb
  console.log(`${total} jobs in ${report.seconds.toFixed(1)} s; fds ${report.before.fds} -> ${report.after.fds}; ` +
    `zombies ${report.zombies.length}; processes left ${report.left.length}; ` +
    `RSS ${report.before.rssKb} -> ${report.after.rssKb} KiB (${grewKb >= 0 ? '+' : ''}${grewKb} KiB); ` +
    `fork server RSS ${report.before.forkServerRssKb} -> ${report.after.forkServerRssKb} KiB`)
  const flat = report.after.fds === report.before.fds && report.zombies.length === 0 && report.left.length === 0 &&
    grewKb < 10 * 1024 && report.after.forkServerRssKb === report.before.forkServerRssKb
  process.exitCode = flat ? 0 : 1
}
