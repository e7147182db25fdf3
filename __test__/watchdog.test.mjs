// The SIGKILL watchdog lost (no shell to run it, or killed): jobs still run, and the
// application is told once, with a process warning.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

import { nativeOnly } from './helpers.mjs'

const fixture = fileURLToPath(new URL('./fixtures/watchdog-lost.mjs', import.meta.url))
const expectedOutputs = [0, 1, 2, 3, 4, 5, 6].map((i) => `job-${i}\n`)

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
const printed = (stderr) => stderr.split('[LOCAL_WORKER_NO_WATCHDOG]').length - 1

// A mount namespace of our own, where the shells can be masked without touching the machine.
const unshare = ['unshare', '--mount', '--propagation', 'private']
const canUnshare = spawnSync(unshare[0], [...unshare.slice(1), 'true']).status === 0
const skipNoShell = nativeOnly('the SIGKILL watchdog') ||
  (canUnshare ? false : 'needs `unshare --mount` (root or CAP_SYS_ADMIN) to hide the shells')

test('no shell for the watchdog: one LOCAL_WORKER_NO_WATCHDOG warning, and the jobs run', { skip: skipNoShell }, async () => {
  const report = await runFixture('no-shell', unshare)
  assert.deepEqual(report.outputs, expectedOutputs)
  assert.equal(report.startedWatchdogs, 0)
  assert.equal(report.warnings.length, 1, JSON.stringify(report.warnings))
  const [warning] = report.warnings
  assert.equal(warning.code, 'LOCAL_WORKER_NO_WATCHDOG')
  assert.match(warning.message, /SIGKILL/)
  assert.match(warning.message, /will not be killed/)
  assert.match(warning.message, /\/bin\/sh/, 'says why')
  assert.equal(printed(report.stderr), 1, report.stderr)
})

test('a watchdog killed behind our back: one warning, and the jobs run', { skip: nativeOnly('the SIGKILL watchdog') }, async () => {
  const report = await runFixture('kill-watchdog')
  assert.deepEqual(report.outputs, expectedOutputs)
  assert.equal(report.startedWatchdogs, 1)
  assert.equal(report.warnings.length, 1, JSON.stringify(report.warnings))
  assert.equal(report.warnings[0].code, 'LOCAL_WORKER_NO_WATCHDOG')
  assert.match(report.warnings[0].message, /is gone/)
  assert.equal(printed(report.stderr), 1, report.stderr)
})

test('a working watchdog: no warning', { skip: nativeOnly('the SIGKILL watchdog') }, async () => {
  const report = await runFixture('normal')
  assert.deepEqual(report.outputs, expectedOutputs)
  assert.equal(report.startedWatchdogs, 1)
  assert.deepEqual(report.warnings, [])
  assert.equal(printed(report.stderr), 0, report.stderr)
})
