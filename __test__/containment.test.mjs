// Containment without escape: a job's processes die with the job whatever session or group they
// moved to (setsid, double forks, nested sessions, SIGTERM ignored), however the job ends and
// however Node ends; jobs stay apart; orphans are reaped and counted. Each job runs under a
// supervisor of its own (a subreaper), which the JavaScript implementation does not have.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { LocalWorkerAdapter, killAll, marker, nativeOnly, processesWith, rejection, runExitFixture, runningWith, scratchDir, sleep } from './helpers.mjs'

const adapter = new LocalWorkerAdapter()
const skip = nativeOnly('a supervisor per job (the JS implementation contains jobs by process group)')
const pid1Fixture = fileURLToPath(new URL('./fixtures/pid1-orphans.mjs', import.meta.url))

const loop = 'while :; do sleep 1; done'
/** `mark` split by empty quotes: the daemons' command lines carry it, the job's shell's does not. */
const split = (mark) => `${mark.slice(0, 4)}""${mark.slice(4)}`
/** Every way a daemon escapes the job's session and group, each carrying `mark`: 6 processes. */
const daemons = (mark) => [
  `setsid sh -c '${loop}' ${split(mark)} &`,
  `( setsid sh -c '${loop}' ${split(mark)} & ) ;`,
  `setsid sh -c "trap '' TERM; ${loop}" ${split(mark)} &`,
  `setsid sh -c "setsid sh -c 'setsid sh -c \\"${loop}\\" \\$0 & ${loop}' \\$0 & ${loop}" ${split(mark)} &`,
].join(' ')
const DAEMONS = 6

/** Waits until `count` daemons carry `mark` (they start in the background). */
async function until(mark, count) {
  const deadline = performance.now() + 5000
  while (runningWith(mark).length < count && performance.now() < deadline) await sleep(10)
  return runningWith(mark).length
}

/** Waits (up to 3 s) for every process carrying `mark` to be gone; returns what is left. */
async function goneSoon(mark) {
  const deadline = performance.now() + 3000
  while (processesWith(mark).length > 0 && performance.now() < deadline) await sleep(20)
  return processesWith(mark)
}

/** Waits until one daemon carrying `mark` ignores SIGTERM (its `trap '' TERM` has run). */
async function untilOneIgnoresSigterm(mark) {
  const deadline = performance.now() + 5000
  const ignoresSigterm = (pid) => {
    try {
      const ignored = /^SigIgn:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'latin1'))
      return ignored !== null && (BigInt(`0x${ignored[1]}`) & (1n << 14n)) !== 0n
    } catch { return false }
  }
  while (!runningWith(mark).some(ignoresSigterm) && performance.now() < deadline) await sleep(10)
  return runningWith(mark).some(ignoresSigterm)
}

test('daemons of a job that exits are gone when its promise settles, the stubborn one after the grace period', { skip }, async (t) => {
  const mark = marker('settled-daemons')
  t.after(() => killAll(mark))
  // The job exits by itself once every daemon runs, the stubborn one with its trap set.
  const go = join(scratchDir('lw-settled-daemons-'), 'go')
  const running = adapter.execute({
    command: 'sh',
    args: ['-c', `${daemons(mark)} while [ ! -e ${go} ]; do sleep 0.02; done; echo up`],
    killGracePeriod: 400,
  })
  assert.equal(await until(mark, DAEMONS), DAEMONS)
  assert.ok(await untilOneIgnoresSigterm(mark), 'the stubborn daemon has its trap set')
  const released = performance.now()
  writeFileSync(go, '')
  const result = await running
  const elapsed = performance.now() - released
  assert.equal(result.stdout, 'up\n')
  assert.equal(result.exitCode, 0)
  assert.ok(elapsed >= 400, `${elapsed}: the daemon ignoring SIGTERM gets the grace period`)
  assert.deepEqual(processesWith(mark), [], 'nothing of the job runs once it settled')
})

test('a timed-out job takes its daemons with it', { skip }, async (t) => {
  const mark = marker('timeout-daemons')
  t.after(() => killAll(mark))
  const running = rejection(adapter.execute({
    command: 'sh',
    args: ['-c', `${daemons(mark)} echo up; sleep 30`],
    timeout: 1500,
    killGracePeriod: 300,
  }))
  assert.equal(await until(mark, DAEMONS), DAEMONS)
  const error = await running
  assert.equal(error.code, 'ETIMEDOUT')
  assert.equal(error.stdout, 'up\n')
  assert.deepEqual(processesWith(mark), [])
})

test('an aborted job takes its daemons with it', { skip }, async (t) => {
  const mark = marker('abort-daemons')
  t.after(() => killAll(mark))
  const controller = new AbortController()
  const running = rejection(adapter.execute({
    command: 'sh',
    args: ['-c', `${daemons(mark)} echo up; sleep 30`],
    signal: controller.signal,
    killGracePeriod: 300,
  }))
  assert.equal(await until(mark, DAEMONS), DAEMONS)
  controller.abort()
  const error = await running
  assert.equal(error.code, 'ABORT_ERR')
  assert.deepEqual(processesWith(mark), [])
})

test("ending one job leaves another job's daemons alone", { skip }, async (t) => {
  const kept = marker('kept-daemons')
  const ended = marker('ended-daemons')
  t.after(() => { killAll(kept); killAll(ended) })
  const controller = new AbortController()
  const other = rejection(adapter.execute({
    command: 'sh',
    args: ['-c', `${daemons(kept)} sleep 30`],
    signal: controller.signal,
    killGracePeriod: 300,
  }))
  assert.equal(await until(kept, DAEMONS), DAEMONS)
  const error = await rejection(adapter.execute({
    command: 'sh',
    args: ['-c', `${daemons(ended)} sleep 30`],
    timeout: 1000,
    killGracePeriod: 300,
  }))
  assert.equal(error.code, 'ETIMEDOUT')
  assert.deepEqual(processesWith(ended), [])
  assert.equal(runningWith(kept).length, DAEMONS, "the other job's daemons are untouched")
  controller.abort()
  await other
  assert.deepEqual(processesWith(kept), [])
})

test("an orphan's CPU time counts in resourceUsage, and maxRssKb is the job's own", { skip }, async () => {
  // The daemon burns ~300 ms of CPU and exits; the main process never waits for it.
  const burn = 'import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass'
  const result = await adapter.execute({ command: 'sh', args: ['-c', `( setsid python3 -c '${burn}' & ) ; sleep 0.8`] })
  const { userCpuMs, systemCpuMs, maxRssKb } = result.resourceUsage
  assert.ok(userCpuMs + systemCpuMs >= 280, JSON.stringify(result.resourceUsage))
  // Python's own footprint, not Node's (which a job inherited at exec when Node spawned it).
  assert.ok(maxRssKb < process.memoryUsage().rss / 1024, `${maxRssKb} kB vs Node's ${process.memoryUsage().rss} B`)
})

for (const [how, mode, act, expected] of [
  ['process.exit()', 'exit', undefined, { code: 7, signal: null }],
  ['an unhandled SIGTERM', 'wait', (child) => child.kill('SIGTERM'), { code: null, signal: 'SIGTERM' }],
  ['SIGKILL', 'wait', (child) => child.kill('SIGKILL'), { code: null, signal: 'SIGKILL' }],
]) {
  test(`Node ended by ${how}: the supervisors end every daemon`, { skip }, async (t) => {
    const mark = marker(`node-${mode}-daemons`)
    t.after(() => killAll(mark))
    const outcome = await runExitFixture([mode, mark, 'daemons'], act)
    assert.equal(outcome.code, expected.code, outcome.stderr)
    assert.equal(outcome.signal, expected.signal)
    // The supervisors act on their own (SIGTERM, the job's 300 ms grace period, SIGKILL).
    assert.deepEqual(await goneSoon(mark), [])
  })
}

const unshareWorks = spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'true']).status === 0

test('Node as PID 1: hundreds of jobs that each orphan a daemon leave no zombie', {
  skip: skip || (unshareWorks ? false : 'unshare --pid --fork --mount-proc is not available here'),
}, async () => {
  const run = spawnSync('unshare', ['--pid', '--fork', '--mount-proc', process.execPath, pid1Fixture, '300'], { encoding: 'utf8', timeout: 120_000 })
  assert.equal(run.status, 0, run.stderr)
  const report = JSON.parse(run.stdout)
  assert.equal(report.total, 300)
  assert.deepEqual(report.zombies, [], JSON.stringify(report))
})

test('a supervisor killed by someone else: the job rejects with ERR_LOCAL_WORKER_SUPERVISOR_LOST and its main group is killed', { skip }, async (t) => {
  const mark = marker('supervisor-killed')
  t.after(() => killAll(mark))
  let supervisor
  const error = await rejection(adapter.execute({
    command: 'sh',
    // The job's shell says who its supervisor is (once the host knows the job's pid: a
    // supervisor tells within 2 ms), then becomes a loop carrying the mark.
    args: ['-c', `sleep 0.05; echo $PPID; exec sh -c '${loop}' ${split(mark)}`],
    onStdout: (text) => {
      supervisor = Number(text.trim())
      process.kill(supervisor, 'SIGKILL')
    },
  }))
  assert.equal(error.code, 'ERR_LOCAL_WORKER_SUPERVISOR_LOST')
  assert.match(error.message, new RegExp(`supervisor of "sh" \\(pid ${supervisor}\\) died`))
  assert.equal(error.stdout, `${supervisor}\n`)
  assert.equal(typeof error.pid, 'number')
  assert.deepEqual(await goneSoon(mark), [])
})
