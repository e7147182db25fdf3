// Nothing left behind: leftovers of a finished job, and every job when Node itself ends.
import { test } from 'node:test'
import assert from 'node:assert/strict'

import { LocalWorkerAdapter, killAll, loopingGrandchild, marker, nativeOnly, processesWith, runExitFixture, runningWith, sleep } from './helpers.mjs'

const adapter = new LocalWorkerAdapter()

test('a daemonised grandchild holding stdout neither hangs the job nor outlives it', async (t) => {
  const mark = marker('daemonised')
  t.after(() => killAll(mark))
  const started = performance.now()
  const result = await adapter.execute({ command: 'sh', args: ['-c', `${loopingGrandchild(mark)} echo done`] })
  assert.ok(performance.now() - started < 3000)
  assert.equal(result.stdout, 'done\n')
  assert.deepEqual(processesWith(mark), [])
})

test('sh -c "sleep 100 & echo done" settles promptly with its output', async () => {
  const started = performance.now()
  const result = await adapter.execute({ command: 'sh', args: ['-c', 'sleep 100 & echo done'] })
  assert.equal(result.stdout, 'done\n')
  assert.ok(performance.now() - started < 3000)
})

test('killLeftovers: false leaves the group alone and settles at exit plus the drain bound', async (t) => {
  const mark = marker('left-alone')
  t.after(() => killAll(mark))
  const started = performance.now()
  const result = await adapter.execute({
    command: 'sh',
    args: ['-c', `${loopingGrandchild(mark)} echo done`],
    killLeftovers: false,
    drainTimeout: 100,
  })
  const elapsed = performance.now() - started
  assert.equal(result.stdout, 'done\n')
  assert.ok(elapsed >= 100 && elapsed < 2000, `${elapsed}`)
  assert.equal(runningWith(mark).length, 1, 'the grandchild still runs')
})

/** Runs the fixture in `mode`; `act` may signal it once the job has started. */
const runFixture = (mode, mark, act) => runExitFixture([mode, mark], act)

for (const [mode, expected] of [
  ['exit', { code: 7, signal: null }],
  ['throw', { code: 1, signal: null }],
  ['unhandled-rejection', { code: 1, signal: null }],
]) {
  test(`Node ending by ${mode} kills every running job`, async (t) => {
    const mark = marker(`node-${mode}`)
    t.after(() => killAll(mark))
    const outcome = await runFixture(mode, mark)
    assert.equal(outcome.code, expected.code, outcome.stderr)
    assert.equal(outcome.signal, expected.signal)
    await sleep(100)
    assert.deepEqual(processesWith(mark), [])
  })
}

for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) {
  test(`Node ended by an unhandled ${signal} kills the jobs, then dies of that signal`, async (t) => {
    const mark = marker(`node-${signal}`)
    t.after(() => killAll(mark))
    const outcome = await runFixture('wait', mark, (child) => child.kill(signal))
    assert.equal(outcome.signal, signal)
    assert.equal(outcome.code, null)
    await sleep(100)
    assert.deepEqual(processesWith(mark), [])
  })
}

test('Node killed by SIGKILL: the supervisors end the jobs', { skip: nativeOnly('a supervisor per job') }, async (t) => {
  const mark = marker('node-sigkill')
  t.after(() => killAll(mark))
  const outcome = await runFixture('wait', mark, (child) => child.kill('SIGKILL'))
  assert.equal(outcome.signal, 'SIGKILL')
  // Each supervisor reads end of stream on its control socket at once; give the kernel a moment.
  const deadline = performance.now() + 3000
  while (processesWith(mark).length > 0 && performance.now() < deadline) await sleep(20)
  assert.deepEqual(processesWith(mark), [])
})

test("an application's own SIGTERM handler is left in charge", async (t) => {
  const mark = marker('node-handled')
  t.after(() => killAll(mark))
  const outcome = await runFixture('handled-sigterm', mark, (child) => {
    setTimeout(() => child.kill('SIGTERM'), 50)
  })
  assert.match(outcome.stdout, /app-handler/)
  assert.equal(outcome.code, 0)
  // It then called process.exit(): the exit hook still killed the job.
  await sleep(100)
  assert.deepEqual(processesWith(mark), [])
})

test('no termination-signal listener is left once no job runs', async () => {
  const before = process.listenerCount('SIGTERM')
  const running = adapter.execute({ command: 'sleep', args: ['0.2'] })
  assert.equal(process.listenerCount('SIGTERM'), before + 1)
  await running
  // Removed on the loop's next turn, so that a serial loop of jobs keeps them meanwhile.
  const next = adapter.execute({ command: 'true' })
  await next
  assert.equal(process.listenerCount('SIGTERM'), before + 1, 'kept across back-to-back jobs')
  await new Promise((resolve) => setImmediate(resolve))
  assert.equal(process.listenerCount('SIGTERM'), before)
})
