// The supervisor lost (no executable, a noexec mount, its fork server killed): jobs still run,
// contained by their process group, and the application is told once, with a process warning.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

import { nativeOnly } from './helpers.mjs'

const fixture = fileURLToPath(new URL('./fixtures/supervisor-lost.mjs', import.meta.url))

/** Runs the fixture in `mode` (under `prefix`, e.g. unshare); resolves with its report. */
function runFixture(mode, prefix = []) {
  const [command, ...args] = [...prefix, process.execPath, fixture, mode]
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => { stdout += d })
    child.stderr.on('data', (d) => { stderr += d })
    child.on('error', reject)
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`fixture exited with ${code}: ${stderr}`))
      resolve({ ...JSON.parse(stdout), stderr })
    })
  })
}

/** Occurrences of the warning's code in what Node printed. */
const printed = (stderr) => stderr.split('[LOCAL_WORKER_NO_SUPERVISOR]').length - 1
/** The jobs' outputs when each ran under a supervisor (`true`) or not. */
const outputs = (supervised) => [0, 1, 2, 3, 4, 5, 6].map((i) => supervised ? `job-${i} lw-supervisor\n` : `job-${i} node\n`)

function assertOneWarning(report, why) {
  assert.equal(report.warnings.length, 1, JSON.stringify(report.warnings))
  const [warning] = report.warnings
  assert.equal(warning.code, 'LOCAL_WORKER_NO_SUPERVISOR')
  assert.match(warning.message, why)
  // It says what is lost.
  assert.match(warning.message, /process group only/)
  assert.match(warning.message, /setsid/)
  assert.match(warning.message, /SIGKILL/)
  assert.match(warning.message, /resourceUsage/)
  assert.equal(printed(report.stderr), 1, report.stderr)
}

// A mount namespace of our own, where a noexec mount touches nothing else.
const unshare = ['unshare', '--mount', '--propagation', 'private']
const canUnshare = spawnSync(unshare[0], [...unshare.slice(1), 'true']).status === 0
const skip = nativeOnly('the supervisor')

test('no supervisor executable: one LOCAL_WORKER_NO_SUPERVISOR warning, and the jobs run', { skip }, async () => {
  const report = await runFixture('missing')
  // Without a supervisor, a job's parent is Node itself.
  assert.deepEqual(report.outputs, outputs(false))
  assert.equal(report.startedServers, 0)
  assertOneWarning(report, /\/nonexistent\/lw-test\/local-worker could not be started: No such file/)
})

test('the executable on a noexec mount: one warning, and the jobs run', {
  skip: skip || (canUnshare ? false : 'needs `unshare --mount` (root or CAP_SYS_ADMIN) for a noexec mount'),
}, async () => {
  const report = await runFixture('noexec', unshare)
  assert.deepEqual(report.outputs, outputs(false))
  assertOneWarning(report, /could not be started: Permission denied/)
})

test('a fork server killed behind our back: one warning, it is reaped, and the jobs run', { skip }, async () => {
  const report = await runFixture('kill-server')
  assert.equal(report.startedServers, 1)
  assert.equal(report.outputs[0], 'job-0 lw-supervisor\n')
  // The supervisors the server had forked ahead (its spares) still take a job each; the rest run
  // without one (a new server is tried at most every 30 s).
  report.outputs.forEach((output, i) => assert.match(output, new RegExp(`^job-${i} (lw-supervisor|node)\n$`)))
  assert.equal(report.outputs.at(-1), 'job-6 node\n')
  assertOneWarning(report, /fork server \(pid \d+\) is gone/)
  assert.deepEqual(report.leftServers, [], 'the dead server is no zombie of ours')
})

test('a working supervisor: every job runs under one, no warning', { skip }, async () => {
  const report = await runFixture('normal')
  assert.deepEqual(report.outputs, outputs(true))
  assert.equal(report.startedServers, 1)
  assert.deepEqual(report.warnings, [])
  assert.equal(printed(report.stderr), 0, report.stderr)
})

test('LOCAL_WORKER_SUPERVISOR=off: process groups only, by choice, without a warning', { skip }, async () => {
  const report = await runFixture('off')
  assert.deepEqual(report.outputs, outputs(false))
  assert.equal(report.startedServers, 0)
  assert.deepEqual(report.warnings, [])
})
