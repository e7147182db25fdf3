// Soak: many mixed jobs (normal, failing, timed out, aborted, spawn errors), then check that
// descriptors, zombie children and RSS are back where they were.
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
  const before = { fds: openFds(), rssKb: Math.round(process.memoryUsage().rss / 1024) }
  const started = performance.now()
  const outcomes = await runJobs(adapter, total, concurrency)
  const seconds = (performance.now() - started) / 1000
  await settleMemory()
  const after = { fds: openFds(), rssKb: Math.round(process.memoryUsage().rss / 1024) }
  return { total, seconds, outcomes, before, after, zombies: zombieChildren() }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const total = Number(process.argv[2] ?? 10_000)
  const concurrency = Number(process.argv[3] ?? 16)
  const report = await soak(total, concurrency)
  console.log(JSON.stringify(report, null, 2))
  const grewKb = report.after.rssKb - report.before.rssKb
  console.log(`${total} jobs in ${report.seconds.toFixed(1)} s; fds ${report.before.fds} -> ${report.after.fds}; ` +
    `zombies ${report.zombies.length}; RSS ${report.before.rssKb} -> ${report.after.rssKb} KiB (${grewKb >= 0 ? '+' : ''}${grewKb} KiB)`)
  process.exitCode = report.after.fds === report.before.fds && report.zombies.length === 0 && grewKb < 10 * 1024 ? 0 : 1
}
