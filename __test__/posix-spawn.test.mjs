// Spawning goes through posix_spawn (clone with CLONE_VM|CLONE_VFORK), never a fork that
// copies the parent's memory. Checked with strace when it is installed.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { nativeOnly } from './helpers.mjs'

const strace = spawnSync('strace', ['-V'])
const root = fileURLToPath(new URL('..', import.meta.url))
const skip = nativeOnly('posix_spawn (child_process spawns with fork on Linux)') || (strace.error ? 'strace is not installed' : false)

test('jobs are spawned with CLONE_VM|CLONE_VFORK, not fork', { skip }, () => {
  const log = join(mkdtempSync(join(tmpdir(), 'lw-strace-')), 'trace')
  const script = `
    const { LocalWorkerAdapter } = require(${JSON.stringify(root)})
    const a = new LocalWorkerAdapter()
    Promise.all([
      a.execute({ command: 'true' }),
      a.execute({ command: 'true', cwd: '/tmp' }),
      a.execute({ command: 'sh', args: ['-c', 'exit 0'], env: { PATH: '/usr/bin:/bin' } }),
    ]).then((r) => console.log(r.map((x) => x.exitCode).join(',')))`
  const run = spawnSync('strace', ['-f', '-o', log, '-e', 'trace=clone,clone3,fork,vfork,execve', process.execPath, '-e', script], { encoding: 'utf8' })
  assert.equal(run.status, 0, run.stderr)
  assert.equal(run.stdout.trim(), '0,0,0')
  const lines = readFileSync(log, 'utf8').split('\n')
  const creations = lines.filter((l) => /\b(clone3?|fork|vfork)\(/.test(l) && !l.includes('resumed>'))
  const processes = creations.filter((l) => !l.includes('CLONE_THREAD'))
  // Node itself spawns nothing here: every new process is one of our three jobs (sh may add none).
  assert.ok(processes.length >= 3, creations.join('\n'))
  for (const line of processes) {
    assert.match(line, /CLONE_VM/, `a process was created without sharing memory (fork): ${line}`)
    assert.match(line, /CLONE_VFORK/, line)
  }
})
