// The core semantics of execute(): arguments, environment, exit codes, errors, output.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync, chmodSync, realpathSync } from 'node:fs'
import { join } from 'node:path'

import { LocalWorkerAdapter, rejection, scratchDir } from './helpers.mjs'

const adapter = new LocalWorkerAdapter()

test('args are passed verbatim, without a shell', async () => {
  const args = ['a b', '"quoted"', "'single'", '$HOME', '*', '', 'ünïcödé ✓ 😀', '--flag=x y', '\\n']
  const result = await adapter.execute({
    command: 'python3',
    args: ['-c', 'import json, sys; print(json.dumps(sys.argv[1:]))', ...args],
  })
  assert.equal(result.exitCode, 0)
  assert.deepEqual(JSON.parse(result.stdout), args)
})

test('env is laid over the inherited environment', async () => {
  process.env.LW_INHERITED = 'from-parent'
  const result = await adapter.execute({
    command: 'sh',
    args: ['-c', 'printf "%s|%s|%s" "$LW_INHERITED" "$LW_ADDED" "$HOME"'],
    env: { LW_ADDED: 'from job ✓', HOME: '/elsewhere' },
  })
  delete process.env.LW_INHERITED
  assert.equal(result.stdout, 'from-parent|from job ✓|/elsewhere')
})

test("a job's PATH is used to find its command", async () => {
  const dir = scratchDir('lw-path-')
  writeFileSync(join(dir, 'lw-only-here'), '#!/bin/sh\necho found me\n')
  chmodSync(join(dir, 'lw-only-here'), 0o755)
  const result = await adapter.execute({ command: 'lw-only-here', env: { PATH: `${dir}:/usr/bin:/bin` } })
  assert.equal(result.stdout, 'found me\n')
})

test('cwd is honoured', async () => {
  const dir = realpathSync(scratchDir('lw-cwd-'))
  const result = await adapter.execute({ command: 'pwd', cwd: dir })
  assert.equal(result.stdout, `${dir}\n`)
})

test('stdin is /dev/null: cat with no arguments ends at once', async () => {
  const result = await adapter.execute({ command: 'cat', timeout: 5000 })
  assert.equal(result.exitCode, 0)
  assert.equal(result.stdout, '')
})

test('a non-zero exit resolves with that exitCode', async () => {
  const result = await adapter.execute({ command: 'sh', args: ['-c', 'echo out; echo err >&2; exit 42'] })
  assert.equal(result.exitCode, 42)
  assert.equal(result.signal, null)
  assert.equal(result.stdout, 'out\n')
  assert.equal(result.stderr, 'err\n')
})

test('death by a signal resolves with 128 + signal number and its name', async () => {
  const result = await adapter.execute({ command: 'sh', args: ['-c', 'kill -KILL $$'] })
  assert.equal(result.exitCode, 128 + 9)
  assert.equal(result.signal, 'SIGKILL')
  const segv = await adapter.execute({ command: 'sh', args: ['-c', 'kill -SEGV $$'] })
  assert.equal(segv.exitCode, 128 + 11)
  assert.equal(segv.signal, 'SIGSEGV')
})

test('command not found rejects with ENOENT naming the command', async () => {
  const error = await rejection(adapter.execute({ command: 'lw-no-such-command', args: ['x'] }))
  assert.ok(error instanceof Error)
  assert.equal(error.code, 'ENOENT')
  assert.equal(error.errno, -2)
  assert.equal(error.syscall, 'spawn')
  assert.equal(error.path, 'lw-no-such-command')
  assert.deepEqual(error.spawnargs, ['x'])
  assert.match(error.message, /lw-no-such-command/)
  const byPath = await rejection(adapter.execute({ command: '/no/such/binary' }))
  assert.equal(byPath.code, 'ENOENT')
  assert.match(byPath.message, /\/no\/such\/binary/)
})

test('a file that is not executable rejects with EACCES', async () => {
  const dir = scratchDir('lw-eacces-')
  const file = join(dir, 'not-executable.sh')
  writeFileSync(file, 'echo hi\n')
  chmodSync(file, 0o644)
  const error = await rejection(adapter.execute({ command: file }))
  assert.equal(error.code, 'EACCES')
  assert.match(error.message, /not-executable\.sh/)
  const dirError = await rejection(adapter.execute({ command: dir }))
  assert.equal(dirError.code, 'EACCES')
})

test('a missing cwd rejects with ENOENT naming the directory', async () => {
  const error = await rejection(adapter.execute({ command: 'true', cwd: '/no/such/dir' }))
  assert.equal(error.code, 'ENOENT')
  assert.match(error.message, /\/no\/such\/dir/)
  assert.equal(error.path, '/no/such/dir')
  const notDir = await rejection(adapter.execute({ command: 'true', cwd: '/etc/hostname' }))
  assert.equal(notDir.code, 'ENOTDIR')
})

test('durationMs is fractional and never 0, from a monotonic clock', async () => {
  const result = await adapter.execute({ command: 'true' })
  assert.ok(result.durationMs > 0)
  assert.notEqual(result.durationMs, Math.round(result.durationMs))
  const slow = await adapter.execute({ command: 'sleep', args: ['0.2'] })
  assert.ok(slow.durationMs >= 200 && slow.durationMs < 5000, `${slow.durationMs}`)
})

test('meta is accepted and ignored', async () => {
  const result = await adapter.execute({ command: 'true', meta: { chunk: 3, nested: { a: [1] } } })
  assert.equal(result.exitCode, 0)
})

test('the result carries pid and the outcome flags', async () => {
  const result = await adapter.execute({ command: 'sh', args: ['-c', 'echo $$'] })
  assert.equal(result.pid, Number(result.stdout.trim()))
  assert.equal(result.timedOut, false)
  assert.equal(result.aborted, false)
})

test('hundreds of jobs at once all complete, and the event loop stays responsive', async () => {
  let longestGap = 0
  let last = performance.now()
  const ticker = setInterval(() => {
    const now = performance.now()
    longestGap = Math.max(longestGap, now - last)
    last = now
  }, 10)
  const jobs = Array.from({ length: 300 }, (_, i) =>
    adapter.execute({ command: 'sh', args: ['-c', `echo job-${i}; echo err-${i} >&2; exit ${i % 7}`] }),
  )
  const results = await Promise.all(jobs)
  clearInterval(ticker)
  results.forEach((result, i) => {
    assert.equal(result.stdout, `job-${i}\n`)
    assert.equal(result.stderr, `err-${i}\n`)
    assert.equal(result.exitCode, i % 7)
  })
  // Generous: this machine is shared; a blocked loop would show seconds.
  assert.ok(longestGap < 500, `event loop blocked for ${longestGap} ms`)
})

test('an ESM named import works as well as require', async () => {
  const esm = await import('../index.js')
  assert.equal(typeof esm.LocalWorkerAdapter, 'function')
  const result = await new esm.LocalWorkerAdapter().execute({ command: 'true' })
  assert.equal(result.exitCode, 0)
})
