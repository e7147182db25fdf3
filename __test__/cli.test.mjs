// `local-worker run`: the supervisor executable as the entrypoint of a cloud worker's container.
// Real processes, the executable built beside the addon (scripts/build-supervisor.mjs).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { implementation, killAll, marker, processesWith, scratchDir, sleep } from './helpers.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const LOCAL_WORKER = join(root, 'local-worker')
// The command is the native supervisor whichever implementation the addon runs: one run is enough.
const skip = implementation === 'js' ? 'the local-worker command is the native executable: tested in the native run' : false

const scratch = () => scratchDir('lw-cli-')
const run = (args, options = {}) => spawnSync(LOCAL_WORKER, ['run', ...args], { encoding: 'utf8', timeout: 30_000, ...options })

test('exits with the job’s status: 0, 7, 128 + n for a signal, 124 for a timeout', { skip }, () => {
  assert.equal(run(['--', 'true']).status, 0)
  const seven = run(['--', 'sh', '-c', 'echo out; echo err >&2; exit 7'])
  assert.equal(seven.status, 7)
  // Straight through: the job's output is ours.
  assert.equal(seven.stdout, 'out\n')
  assert.equal(seven.stderr, 'err\n')
  assert.equal(run(['--', 'sh', '-c', 'kill -9 $$']).status, 137)
  const started = performance.now()
  const late = run(['--timeout', '300ms', '--', 'sleep', '30'])
  assert.equal(late.status, 124)
  const elapsed = performance.now() - started
  assert.ok(elapsed >= 300 && elapsed < 10_000, `${elapsed}`)
})

test('--result writes the WorkerResult, stdout and stderr only with --capture', { skip }, (t) => {
  const dir = scratch()
  const mark = marker('cli-result')
  t.after(() => killAll(mark))
  // The job leaves a setsid daemon behind: it is ended with the job.
  const plain = run(['--result', join(dir, 'plain.json'), '--', 'sh', '-c', `setsid sh -c 'sleep 30' ${mark} & echo é漢; exit 3`])
  assert.equal(plain.status, 3)
  assert.equal(plain.stdout, 'é漢\n')
  const result = JSON.parse(readFileSync(join(dir, 'plain.json'), 'utf8'))
  assert.equal(result.exitCode, 3)
  assert.equal(result.signal, null)
  assert.equal(result.timedOut, false)
  assert.equal(result.aborted, false)
  assert.equal(typeof result.pid, 'number')
  assert.ok(result.durationMs > 0)
  assert.equal(result.stdoutDroppedBytes, 0)
  assert.ok(result.resourceUsage.maxRssKb > 0)
  assert.equal('stdout' in result, false)
  assert.deepEqual(processesWith(mark), [])

  const captured = run(['--capture', '--max-buffer', '8', '--result', join(dir, 'captured.json'), '--', 'sh', '-c', 'printf 0123456789abcdef; printf é >&2'])
  assert.equal(captured.stdout, '0123456789abcdef', 'still written through')
  const kept = JSON.parse(readFileSync(join(dir, 'captured.json'), 'utf8'))
  assert.equal(kept.stdout, '89abcdef')
  assert.equal(kept.stdoutDroppedBytes, 8)
  assert.equal(kept.stderr, 'é')

  const timedOut = run(['--timeout', '200ms', '--result', join(dir, 'late.json'), '--', 'sleep', '30'])
  assert.equal(timedOut.status, 124)
  const late = JSON.parse(readFileSync(join(dir, 'late.json'), 'utf8'))
  assert.equal(late.timedOut, true)
  assert.equal(late.signal, 'SIGTERM')
  assert.equal(late.exitCode, 143)

  const missing = run(['--result', join(dir, 'missing.json'), '--', 'lw-no-such-command'])
  assert.equal(missing.status, 127)
  assert.match(missing.stderr, /spawn lw-no-such-command ENOENT/)
  const error = JSON.parse(readFileSync(join(dir, 'missing.json'), 'utf8'))
  assert.equal(error.exitCode, 127)
  assert.equal(error.error.code, 'ENOENT')
})

test('the result file type-checks as the TypeScript WorkerResult', { skip }, () => {
  const dir = scratch()
  assert.equal(run(['--capture', '--result', join(dir, 'captured.json'), '--', 'echo', 'typed']).status, 0)
  assert.equal(run(['--result', join(dir, 'plain.json'), '--', 'true']).status, 0)
  assert.equal(run(['--result', join(dir, 'failed.json'), '--', 'lw-no-such-command']).status, 127)
  writeFileSync(join(dir, 'check.ts'), `
/// <reference path=${JSON.stringify(join(root, '__test__', 'types', 'infrastructure.d.ts'))} />
import type { WorkerResult, LocalWorkerRunResult } from ${JSON.stringify(join(root, 'index.js'))}
import captured from './captured.json'
import plain from './plain.json'
import failed from './failed.json'
export const asResult: WorkerResult = captured
export const asInfrastructure: Infrastructure.WorkerResult = captured
export const asRunResult: LocalWorkerRunResult = plain
export const asFailure: LocalWorkerRunResult = failed
`)
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { strict: true, noEmit: true, module: 'commonjs', moduleResolution: 'node', resolveJsonModule: true, esModuleInterop: true, skipLibCheck: false, types: ['node'], typeRoots: [join(root, 'node_modules', '@types')] },
    files: ['check.ts'],
  }))
  const tsc = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir], { encoding: 'utf8' })
  assert.equal(tsc.status, 0, tsc.stdout + tsc.stderr)
  // And it can fail: a file without stdout is no WorkerResult.
  writeFileSync(join(dir, 'check.ts'), `
import type { WorkerResult } from ${JSON.stringify(join(root, 'index.js'))}
import plain from './plain.json'
export const wrong: WorkerResult = plain
`)
  const wrong = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir], { encoding: 'utf8' })
  assert.notEqual(wrong.status, 0)
  assert.match(wrong.stdout, /stdout/)
})

/** Starts `local-worker run args...`; resolves once its output includes `ready`. */
async function startReady(args) {
  const child = spawn(LOCAL_WORKER, ['run', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => { stdout += d })
  child.stderr.on('data', (d) => { stderr += d })
  const ended = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
  const deadline = performance.now() + 10_000
  while (!stdout.includes('ready') && performance.now() < deadline) await sleep(10)
  assert.ok(stdout.includes('ready'), `not ready: ${stdout} ${stderr}`)
  return { child, ended, output: () => ({ stdout, stderr }) }
}

test('SIGTERM is forwarded to the whole tree, with the grace period, and local-worker exits with the job’s status', { skip }, async (t) => {
  const mark = marker('cli-sigterm')
  t.after(() => killAll(mark))
  // The job handles SIGTERM (it takes 300 ms to finish), its daemon dies of it.
  const polite = await startReady(['--grace', '5s', '--', 'sh', '-c',
    `setsid sh -c 'while :; do sleep 1; done' ${mark} & trap 'sleep 0.3; echo bye; exit 3' TERM; echo ready; while :; do sleep 0.05; done`])
  let started = performance.now()
  polite.child.kill('SIGTERM')
  const first = await polite.ended
  assert.equal(first.code, 3)
  assert.ok(performance.now() - started >= 300)
  assert.match(polite.output().stdout, /bye/)
  assert.deepEqual(processesWith(mark), [])

  // A job that ignores SIGTERM is SIGKILLed after the grace period.
  const stubborn = await startReady(['--grace', '700ms', '--', 'sh', '-c', `trap '' TERM; echo ready; while :; do sleep 0.05; done; : ${mark}`])
  started = performance.now()
  stubborn.child.kill('SIGTERM')
  const second = await stubborn.ended
  const elapsed = performance.now() - started
  assert.equal(second.code, 137)
  assert.ok(elapsed >= 700 && elapsed < 5000, `${elapsed}`)

  // Asked twice, it does not wait for the grace period.
  const hurried = await startReady(['--grace', '30s', '--', 'sh', '-c', `trap '' TERM INT; echo ready; while :; do sleep 0.05; done; : ${mark}`])
  started = performance.now()
  hurried.child.kill('SIGINT')
  await sleep(100)
  hurried.child.kill('SIGINT')
  assert.equal((await hurried.ended).code, 137)
  assert.ok(performance.now() - started < 5000)
})

const unshareWorks = spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'true']).status === 0

test('as PID 1, 50 orphaned daemons leave no zombie', {
  skip: skip || (unshareWorks ? false : 'unshare --pid --fork --mount-proc is not available here'),
}, () => {
  // The job orphans 50 double-forked daemons that end after 0.2 s, then, once they are gone,
  // counts the zombies of the namespace: local-worker, its PID 1, must have reaped them all.
  // Each daemon signs a file as it starts: the job waits for all 50, then for them to end.
  const signed = join(scratch(), 'daemons')
  const script = `
    for i in $(seq 50); do ( setsid sh -c 'echo $$ >> ${signed}; sleep 0.2' & ) ; done
    while [ "$(cat ${signed} 2>/dev/null | wc -l)" -lt 50 ]; do sleep 0.02; done
    echo "daemons $(wc -l < ${signed})"
    sleep 1
    echo "zombies $(grep -l '^State:.*Z' /proc/[0-9]*/status 2>/dev/null | wc -l)"
    echo "pid1 $(cat /proc/1/comm)"`
  const result = spawnSync('unshare', ['--pid', '--fork', '--mount-proc', LOCAL_WORKER, 'run', '--', 'sh', '-c', script], { encoding: 'utf8', timeout: 30_000 })
  assert.equal(result.status, 0, result.stderr)
  assert.match(result.stdout, /^daemons 50$/m)
  assert.match(result.stdout, /^zombies 0$/m)
  assert.match(result.stdout, /^pid1 local-worker$/m)
})

test('--job reads a WorkerJob: command, args, env (null removes), cwd, timeout', { skip }, () => {
  const dir = scratch()
  writeFileSync(join(dir, 'job.json'), JSON.stringify({
    command: 'sh',
    args: ['-c', 'echo "$LW_FROM_FILE"; pwd; echo "${LW_REMOVED-unset}"'],
    env: { LW_FROM_FILE: 'from the file', LW_REMOVED: null },
    cwd: dir,
    timeout: 10_000,
    meta: { chunk: 3 },
  }))
  const result = run(['--job', join(dir, 'job.json')], { env: { ...process.env, LW_REMOVED: 'inherited' } })
  assert.equal(result.status, 0, result.stderr)
  assert.equal(result.stdout, `from the file\n${dir}\nunset\n`)

  writeFileSync(join(dir, 'late.json'), JSON.stringify({ command: 'sleep', args: ['30'], timeout: 200 }))
  assert.equal(run(['--job', join(dir, 'late.json')]).status, 124)
})

test('bad flags and bad job files: a message that names them, and exit status 2', { skip }, () => {
  const dir = scratch()
  const bad = (args, message) => {
    const result = run(args)
    assert.equal(result.status, 2, `${args.join(' ')}: ${result.stderr}`)
    assert.match(result.stderr, message)
    assert.equal(result.stdout, '')
  }
  bad(['--timeout', 'ten', '--', 'true'], /--timeout must be a duration such as 500ms, 30s, 10m or 1h \(got "ten"\)/)
  bad(['--grace', '5', '--', 'true'], /--grace must be a duration/)
  bad(['--max-buffer', 'lots', '--', 'true'], /--max-buffer must be a whole number of bytes/)
  bad(['--frobnicate', '--', 'true'], /unknown option --frobnicate/)
  bad([], /no command given/)
  bad(['--job'], /--job needs a value/)
  writeFileSync(join(dir, 'args.json'), JSON.stringify({ command: 'echo', args: ['a', 2] }))
  bad(['--job', join(dir, 'args.json')], /job\.args\[1\] must be a string \(got number\)/)
  writeFileSync(join(dir, 'command.json'), JSON.stringify({ args: [] }))
  bad(['--job', join(dir, 'command.json')], /job\.command must be a non-empty string/)
  writeFileSync(join(dir, 'env.json'), JSON.stringify({ command: 'true', env: { 'A=B': 'x' } }))
  bad(['--job', join(dir, 'env.json')], /job\.env\["A=B"\] key must not contain '='/)
  writeFileSync(join(dir, 'timeout.json'), JSON.stringify({ command: 'true', timeout: -5 }))
  bad(['--job', join(dir, 'timeout.json')], /job\.timeout must be a finite number of milliseconds/)
  writeFileSync(join(dir, 'garbage.json'), '{ "command": ')
  bad(['--job', join(dir, 'garbage.json')], /not JSON/)
  bad(['--job', join(dir, 'nothing-here.json')], /cannot read it/)
  bad(['--job', join(dir, 'args.json'), '--', 'true'], /not both/)
  // --help is help, not an error.
  const help = run(['--help'])
  assert.equal(help.status, 0)
  assert.match(help.stdout, /usage: local-worker run/)
})
