// Termination signals compose with other cooperative listeners (signal-exit, a second copy of
// this addon) and with Node as PID 1: Node still dies of the signal, with its jobs killed,
// whenever the application has not taken charge of it.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { copyFileSync, readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { implementation, killAll, marker, processesWith, scratchDir, sleep } from './helpers.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))

/** A job script that carries `mark` in a long-running grandchild. */
const jobOf = (mark) => `{ command: 'sh', args: ['-c', "sh -c 'while :; do sleep 1; done' ${mark} & echo started; sleep 100"] }`

/**
 * Runs `code` in a child Node (argv: `command...`), waits for 'ready' on its stdout, sends it
 * `signal` (to `pidOf(child)` if given), and resolves with how it ended.
 */
async function runAndSignal(argv, signal, pidOf = (child) => child.pid) {
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => { stdout += d })
  child.stderr.on('data', (d) => { stderr += d })
  const ended = new Promise((resolve) => child.once('exit', (code, sig) => resolve({ code, signal: sig })))
  const ready = await Promise.race([
    new Promise((resolve) => child.stdout.on('data', () => stdout.includes('ready') && resolve(true))),
    ended.then(() => false),
    sleep(10_000).then(() => false),
  ])
  assert.ok(ready, `the child did not get ready: ${stdout} ${stderr}`)
  process.kill(pidOf(child), signal)
  const outcome = await Promise.race([ended, sleep(5000).then(() => null)])
  if (outcome === null) child.kill('SIGKILL')
  return { ...(outcome ?? { code: null, signal: 'still running' }), stdout, stderr }
}

const node = (code) => [process.execPath, '-e', code]

for (const order of ['signal-exit first', 'our listener first']) {
  test(`signal-exit's onExit handler and ours compose (${order}): Node dies of SIGTERM, jobs killed, its cleanup ran`, async (t) => {
    const mark = marker('signal-exit')
    t.after(() => killAll(mark))
    const signalExit = `require(${JSON.stringify(join(root, 'node_modules', 'signal-exit'))}).onExit(() => { process.stdout.write('cleanup ran\\n') })`
    const code = `
      const { LocalWorkerAdapter } = require(${JSON.stringify(root)})
      ${order === 'signal-exit first' ? signalExit : ''}
      new LocalWorkerAdapter().execute(${jobOf(mark)}).catch(() => {})
      ${order === 'signal-exit first' ? '' : signalExit}
      setTimeout(() => console.log('ready'), 300)
    `
    const outcome = await runAndSignal(node(code), 'SIGTERM')
    assert.equal(outcome.signal, 'SIGTERM', `Node did not die of SIGTERM: ${JSON.stringify(outcome)}`)
    assert.match(outcome.stdout, /cleanup ran/)
    await sleep(200)
    assert.deepEqual(processesWith(mark), [])
  })
}

test('two copies of the addon in one process: Node dies of SIGTERM and both copies kill their jobs', { skip: implementation === 'js' ? 'native only: loads a second copy of the .node binary' : false }, async (t) => {
  const marks = [marker('copy-a'), marker('copy-b')]
  t.after(() => marks.forEach(killAll))
  const binary = readdirSync(root).find((f) => /^local-worker\..*\.node$/.test(f) && f.includes(process.arch))
  const second = join(scratchDir('lw-copy-'), 'second.node')
  copyFileSync(join(root, binary), second)
  const code = `
    const a = require(${JSON.stringify(root)})
    const b = require(${JSON.stringify(second)})
    new a.LocalWorkerAdapter().execute(${jobOf(marks[0])}).catch(() => {})
    new b.LocalWorkerAdapter().execute(${jobOf(marks[1])}).catch(() => {})
    setTimeout(() => console.log('ready'), 300)
  `
  const outcome = await runAndSignal(node(code), 'SIGTERM')
  assert.equal(outcome.signal, 'SIGTERM', `Node did not die of SIGTERM: ${JSON.stringify(outcome)}`)
  await sleep(200)
  assert.deepEqual(processesWith(marks[0]), [])
  assert.deepEqual(processesWith(marks[1]), [])
})

test("an application listener next to signal-exit's is still in charge", async (t) => {
  const mark = marker('app-in-charge')
  t.after(() => killAll(mark))
  const code = `
    require(${JSON.stringify(join(root, 'node_modules', 'signal-exit'))}).onExit(() => {})
    process.on('SIGTERM', () => { console.log('app handled it'); setTimeout(() => process.exit(3), 300) })
    const { LocalWorkerAdapter } = require(${JSON.stringify(root)})
    new LocalWorkerAdapter().execute(${jobOf(mark)}).catch(() => {})
    setTimeout(() => console.log('ready'), 300)
  `
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] })
  let stdout = ''
  child.stdout.on('data', (d) => { stdout += d })
  while (!stdout.includes('ready')) await sleep(20)
  child.kill('SIGTERM')
  await sleep(100)
  assert.match(stdout, /app handled it/)
  assert.notDeepEqual(processesWith(mark), [], 'the job was killed although the application handles SIGTERM')
  const code3 = await new Promise((resolve) => child.once('exit', resolve))
  assert.equal(code3, 3)
  await sleep(200)
  assert.deepEqual(processesWith(mark), [], 'process.exit() did not kill the job')
})

function unshareWorks() {
  const probe = spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'true'])
  return probe.status === 0
}

test('Node as PID 1: SIGTERM kills the jobs and ends Node with 143, as elsewhere', { skip: unshareWorks() ? false : 'unshare --pid --fork --mount-proc is not available here' }, async (t) => {
  const mark = marker('pid1')
  t.after(() => killAll(mark))
  const code = `
    if (process.pid !== 1) throw new Error('not PID 1')
    const { LocalWorkerAdapter } = require(${JSON.stringify(root)})
    new LocalWorkerAdapter().execute(${jobOf(mark)}).catch(() => {})
    setTimeout(() => console.log('ready'), 300)
  `
  // The signal goes to Node (the namespace's PID 1, a child of unshare), seen from outside.
  const nodeOf = (unshare) => Number(readFileSync(`/proc/${unshare.pid}/task/${unshare.pid}/children`, 'utf8').trim().split(' ')[0])
  const outcome = await runAndSignal(['unshare', '--pid', '--fork', '--mount-proc', ...node(code)], 'SIGTERM', nodeOf)
  assert.equal(outcome.code, 143, `Node as PID 1 did not end with 128 + SIGTERM: ${JSON.stringify(outcome)}`)
  await sleep(200)
  assert.deepEqual(processesWith(mark), [])
})
