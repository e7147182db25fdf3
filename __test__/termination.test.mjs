// Timeouts, aborts and failing callbacks: the whole process group goes, partial output stays.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { getEventListeners } from 'node:events'
import { join } from 'node:path'

import { killAll, LocalWorkerAdapter, loopingGrandchild, marker, processesWith, rejection, scratchDir, sleep } from './helpers.mjs'

const adapter = new LocalWorkerAdapter()

test('timeout terminates the whole group and rejects with ETIMEDOUT and the partial output', async (t) => {
  const mark = marker('timeout')
  t.after(() => killAll(mark))
  const started = performance.now()
  const error = await rejection(adapter.execute({
    command: 'sh',
    args: ['-c', `${loopingGrandchild(mark)} echo partial-out; echo partial-err >&2; sleep 30`],
    timeout: 300,
  }))
  const elapsed = performance.now() - started
  assert.ok(error instanceof Error)
  assert.equal(error.code, 'ETIMEDOUT')
  assert.match(error.message, /timed out after 300ms/)
  assert.equal(error.stdout, 'partial-out\n')
  assert.equal(error.stderr, 'partial-err\n')
  assert.equal(error.timedOut, true)
  assert.equal(error.signal, 'SIGTERM')
  assert.ok(error.durationMs >= 300, `${error.durationMs}`)
  assert.ok(elapsed >= 300 && elapsed < 5000, `${elapsed}`)
  assert.deepEqual(processesWith(mark), [], 'the grandchild is gone when the promise settles')
})

test('a group that ignores SIGTERM is SIGKILLed after the grace period, before the promise settles', async (t) => {
  const mark = marker('ignores-term')
  t.after(() => killAll(mark))
  const started = performance.now()
  const error = await rejection(adapter.execute({
    command: 'sh',
    args: ['-c', `trap '' TERM; ${loopingGrandchild(mark)} echo ready; while :; do sleep 1; done`],
    timeout: 300,
    killGracePeriod: 700,
  }))
  const elapsed = performance.now() - started
  assert.equal(error.code, 'ETIMEDOUT')
  assert.equal(error.signal, 'SIGKILL')
  assert.equal(error.exitCode, 128 + 9)
  assert.equal(error.stdout, 'ready\n')
  assert.ok(elapsed >= 1000, `settled after ${elapsed} ms, before the grace period ended`)
  assert.deepEqual(processesWith(mark), [])
})

test('timeout 0 or absent means no limit', async () => {
  const result = await adapter.execute({ command: 'sleep', args: ['0.3'], timeout: 0 })
  assert.equal(result.exitCode, 0)
  assert.equal(result.timedOut, false)
})

test('an already aborted signal rejects at once and never starts the command', async () => {
  const dir = scratchDir('lw-abort-')
  const witness = join(dir, 'started')
  const reason = new Error('user cancelled')
  const error = await rejection(adapter.execute({ command: 'touch', args: [witness], signal: AbortSignal.abort(reason) }))
  assert.equal(error.name, 'AbortError')
  assert.equal(error.code, 'ABORT_ERR')
  assert.equal(error.message, 'Job was aborted')
  assert.equal(error.cause, reason)
  await sleep(100)
  assert.equal(existsSync(witness), false)
})

test('aborting mid-run terminates the group and rejects with AbortError and partial output', async (t) => {
  const mark = marker('abort')
  t.after(() => killAll(mark))
  const controller = new AbortController()
  const promise = adapter.execute({
    command: 'sh',
    args: ['-c', `${loopingGrandchild(mark)} echo before-abort; sleep 30`],
    signal: controller.signal,
    onStdout: () => controller.abort(),
  })
  const error = await rejection(promise)
  assert.equal(error.name, 'AbortError')
  assert.equal(error.code, 'ABORT_ERR')
  assert.equal(error.message, 'Job was aborted')
  assert.equal(error.aborted, true)
  assert.equal(error.stdout, 'before-abort\n')
  assert.equal(typeof error.durationMs, 'number')
  assert.deepEqual(processesWith(mark), [])
})

test("the user's signal.onabort is kept, and our listener is removed when the job settles", async () => {
  const controller = new AbortController()
  let userHandlerCalls = 0
  controller.signal.onabort = () => { userHandlerCalls++ }
  const done = await adapter.execute({ command: 'true', signal: controller.signal })
  assert.equal(done.exitCode, 0)
  assert.equal(getEventListeners(controller.signal, 'abort').length, 1, 'only the onabort handler remains')
  const running = adapter.execute({ command: 'sleep', args: ['30'], signal: controller.signal })
  await sleep(50)
  controller.abort()
  await rejection(running)
  assert.equal(userHandlerCalls, 1)
  assert.equal(controller.signal.onabort !== null, true)
})

test('a long-lived signal shared by 10,000 jobs accumulates no listeners', async () => {
  const controller = new AbortController()
  const { signal } = controller
  const total = 10_000
  let next = 0
  const worker = async () => {
    while (next < total) {
      next++
      const result = await adapter.execute({ command: 'true', signal })
      assert.equal(result.exitCode, 0)
    }
  }
  globalThis.gc?.()
  const heapBefore = process.memoryUsage().heapUsed
  await Promise.all(Array.from({ length: 16 }, worker))
  assert.equal(getEventListeners(signal, 'abort').length, 0)
  globalThis.gc?.()
  const grown = process.memoryUsage().heapUsed - heapBefore
  assert.ok(grown < 4 * 1024 * 1024, `heap grew by ${grown} bytes over ${total} jobs`)
})

test('a throwing callback fails the job: group killed, rejection carries the thrown error', async (t) => {
  const mark = marker('throwing-callback')
  t.after(() => killAll(mark))
  const uncaught = []
  const onUncaught = (e) => uncaught.push(e)
  process.on('uncaughtException', onUncaught)
  t.after(() => process.off('uncaughtException', onUncaught))
  const thrown = new Error('callback exploded')
  const started = performance.now()
  const error = await rejection(adapter.execute({
    command: 'sh',
    args: ['-c', `${loopingGrandchild(mark)} echo first; sleep 30`],
    onStdout: () => { throw thrown },
  }))
  assert.ok(performance.now() - started < 5000)
  assert.equal(error.code, 'ERR_CALLBACK_FAILED')
  assert.match(error.message, /onStdout callback threw: callback exploded/)
  assert.equal(error.cause, thrown)
  assert.equal(error.stdout, 'first\n')
  assert.deepEqual(processesWith(mark), [])
  // A non-Error thrown value is carried exactly too.
  const odd = await rejection(adapter.execute({ command: 'sh', args: ['-c', 'echo x >&2'], onStderr: () => { throw 'plain string' } }))
  assert.equal(odd.cause, 'plain string')
  assert.match(odd.message, /onStderr callback threw: plain string/)
  await sleep(50)
  assert.deepEqual(uncaught, [])
})

test('many running jobs on one signal share one listener; aborting it aborts them all', async (t) => {
  const warnings = []
  const onWarning = (w) => warnings.push(w)
  process.on('warning', onWarning)
  t.after(() => process.off('warning', onWarning))
  const controller = new AbortController()
  const jobs = Array.from({ length: 20 }, () => rejection(adapter.execute({ command: 'sleep', args: ['30'], signal: controller.signal })))
  await sleep(100)
  assert.equal(getEventListeners(controller.signal, 'abort').length, 1)
  controller.abort()
  const errors = await Promise.all(jobs)
  for (const error of errors) assert.equal(error.code, 'ABORT_ERR')
  assert.equal(getEventListeners(controller.signal, 'abort').length, 0)
  await sleep(10)
  assert.deepEqual(warnings.map(String), [])
})

test('after a callback throws, it is not called again', async () => {
  let calls = 0
  const error = await rejection(adapter.execute({
    command: 'python3',
    args: ['-c', "import sys, time\nfor i in range(50):\n  sys.stdout.write('x' * 200000); sys.stdout.flush(); time.sleep(0.002)"],
    onStdout: () => { calls++; throw new Error('first call fails') },
  }))
  assert.equal(error.code, 'ERR_CALLBACK_FAILED')
  assert.equal(calls, 1)
  assert.ok(error.stdout.length > 0)
})
