// Node never forks: it starts one small fork server with posix_spawn (clone with
// CLONE_VM|CLONE_VFORK), the server forks supervisors (copies of a small process), and each
// job is started by a supervisor with a vfork (CLONE_VM|CLONE_VFORK). Checked with strace when
// it is installed.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { nativeOnly, scratchDir } from './helpers.mjs'

const strace = spawnSync('strace', ['-V'])
const root = fileURLToPath(new URL('..', import.meta.url))
const skip = nativeOnly('posix_spawn (child_process spawns with fork on Linux)') || (strace.error ? 'strace is not installed' : false)

/** Every process or thread creation in an `strace -f` log: { by, flags, child }. */
function creations(log) {
  const pending = new Map()
  const found = []
  for (const line of log.split('\n')) {
    const call = /^(\d+)\s+(clone3?|fork|vfork)\((.*)$/.exec(line)
    const resumed = /^(\d+)\s+<\.\.\. (clone3?|fork|vfork) resumed>(.*)$/.exec(line)
    let by, text
    if (call) {
      ;[, by, , text] = call
      if (text.includes('<unfinished ...>')) {
        pending.set(by, text)
        continue
      }
    } else if (resumed) {
      ;[, by, , text] = resumed
      text = `${pending.get(by) ?? ''} ${text}`
      pending.delete(by)
    } else {
      continue
    }
    const child = /= (\d+)\s*$/.exec(text)
    if (child) found.push({ by: Number(by), flags: text, child: Number(child[1]), thread: text.includes('CLONE_THREAD') })
  }
  return found
}

test('Node starts one fork server with CLONE_VM|CLONE_VFORK; jobs are posix_spawned by their supervisors', { skip }, () => {
  const log = join(scratchDir('lw-strace-'), 'trace')
  const script = `
    const { LocalWorkerAdapter } = require(${JSON.stringify(root)})
    const a = new LocalWorkerAdapter()
    const run = () => Promise.all([
      a.execute({ command: 'true' }),
      a.execute({ command: 'true', cwd: '/tmp' }),
      a.execute({ command: 'sh', args: ['-c', 'exit 0'], env: { PATH: '/usr/bin:/bin' } }),
    ])
    run().then(run).then((r) => console.log(process.pid, r.map((x) => x.exitCode).join(',')))`
  const run = spawnSync('strace', ['-f', '-o', log, '-e', 'trace=clone,clone3,fork,vfork', process.execPath, '-e', script], { encoding: 'utf8' })
  assert.equal(run.status, 0, run.stderr)
  const [node, codes] = run.stdout.trim().split(' ')
  assert.equal(codes, '0,0,0')
  const all = creations(readFileSync(log, 'utf8'))
  const text = all.map((c) => `${c.by} -> ${c.child}: ${c.flags}`).join('\n')
  // Node's threads: its main thread and every thread it (transitively) created.
  const nodeThreads = new Set([Number(node)])
  for (const c of all) if (c.thread && nodeThreads.has(c.by)) nodeThreads.add(c.child)
  const byNode = all.filter((c) => !c.thread && nodeThreads.has(c.by))
  assert.equal(byNode.length, 1, `Node created one process (the fork server), not one per job:\n${text}`)
  assert.match(byNode[0].flags, /CLONE_VM/, byNode[0].flags)
  assert.match(byNode[0].flags, /CLONE_VFORK/, byNode[0].flags)
  const server = byNode[0].child
  // The server forks supervisors ahead of their jobs (a few more while requests queue up), and
  // a supervisor whose job left nothing behind may take another: every job is one of theirs.
  const supervisors = new Set(all.filter((c) => c.by === server).map((c) => c.child))
  const jobs = all.filter((c) => supervisors.has(c.by))
  assert.equal(jobs.length, 6, `six jobs, each started by a supervisor:\n${text}`)
  for (const job of jobs) {
    assert.match(job.flags, /CLONE_VM/, `a job was started without sharing memory: ${job.flags}`)
    assert.match(job.flags, /CLONE_VFORK/, job.flags)
  }
})
