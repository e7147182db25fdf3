// Which implementation runs the jobs: the native addon by default where its binary is installed,
// the JavaScript one (js/) under LOCAL_WORKER_IMPLEMENTATION=js; anything else is an error.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

import { implementation } from './helpers.mjs'

const entry = fileURLToPath(new URL('../index.js', import.meta.url))
const glibc = Boolean(process.report?.getReport?.()?.header?.glibcVersionRuntime)
/** napi's name of this platform, as index.js computes it: linux-x64-gnu, linux-arm64-gnu, ... */
const platform = `${process.platform}-${process.arch}${process.platform === 'linux' ? (glibc ? '-gnu' : '-musl') : ''}`
const binary = fileURLToPath(new URL(`../local-worker.${platform}.node`, import.meta.url))
/** This machine has the addon built in the package root. */
const nativeHere = existsSync(binary)

/** Runs `script` in a fresh Node with LOCAL_WORKER_IMPLEMENTATION set to `value` (unset when undefined). */
function node(value, script) {
  const env = { ...process.env }
  delete env.LOCAL_WORKER_IMPLEMENTATION
  if (value !== undefined) env.LOCAL_WORKER_IMPLEMENTATION = value
  const run = spawnSync(process.execPath, ['-e', script], { env, encoding: 'utf8', timeout: 30_000 })
  assert.equal(run.error, undefined)
  return run
}

const printImplementation = `console.log(require(${JSON.stringify(entry)}).implementation)`

test("the native addon is the default where its binary is installed", { skip: nativeHere ? false : `no local-worker.${platform}.node in the package root` }, () => {
  const run = node(undefined, printImplementation)
  assert.equal(run.status, 0, run.stderr)
  assert.equal(run.stdout.trim(), 'native')
  const explicit = node('native', printImplementation)
  assert.equal(explicit.stdout.trim(), 'native', explicit.stderr)
})

test('LOCAL_WORKER_IMPLEMENTATION=js selects the JavaScript implementation', () => {
  const run = node('js', printImplementation)
  assert.equal(run.status, 0, run.stderr)
  assert.equal(run.stdout.trim(), 'js')
})

test('this suite runs on the implementation LOCAL_WORKER_IMPLEMENTATION asks for', () => {
  const asked = process.env.LOCAL_WORKER_IMPLEMENTATION
  if (asked === 'js' || asked === 'native') assert.equal(implementation, asked)
  else if (nativeHere) assert.equal(implementation, 'native')
})

test('an invalid LOCAL_WORKER_IMPLEMENTATION is an error naming the variable', () => {
  const run = node('rust', `
    try { require(${JSON.stringify(entry)}); console.log('loaded') }
    catch (error) { console.log(JSON.stringify({ code: error.code, message: error.message })) }`)
  assert.equal(run.status, 0, run.stderr)
  const { code, message } = JSON.parse(run.stdout)
  assert.equal(code, 'ERR_LOCAL_WORKER_IMPLEMENTATION')
  assert.match(message, /LOCAL_WORKER_IMPLEMENTATION/)
  assert.match(message, /"rust"/)
  // And loading fails loudly when nobody catches it.
  const uncaught = node('rust', `require(${JSON.stringify(entry)})`)
  assert.notEqual(uncaught.status, 0)
  assert.match(uncaught.stderr, /LOCAL_WORKER_IMPLEMENTATION/)
})

test('the JavaScript implementation returns every result field but resourceUsage', () => {
  const run = node('js', `
    const { LocalWorkerAdapter } = require(${JSON.stringify(entry)})
    new LocalWorkerAdapter().execute({ command: 'sh', args: ['-c', 'echo hi'] })
      .then((result) => console.log(JSON.stringify(result)))`)
  assert.equal(run.status, 0, run.stderr)
  const result = JSON.parse(run.stdout)
  assert.deepEqual(Object.keys(result).sort(), [
    'aborted', 'durationMs', 'exitCode', 'pid', 'signal', 'stderr', 'stderrDroppedBytes',
    'stdout', 'stdoutDroppedBytes', 'timedOut',
  ])
  assert.equal(result.stdout, 'hi\n')
  assert.equal(result.exitCode, 0)
})
