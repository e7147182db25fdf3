// What a job starts with: the environment and working directory at the moment of the call,
// signal dispositions and mask reset, a session of its own, execvp's ENOEXEC rule, and a
// timeout that is a limit however small. Regressions of the hardening issue (items 1, 6-9, 14, 15).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { chmodSync, mkdirSync, realpathSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { LocalWorkerAdapter, rejection, scratchDir } from './helpers.mjs'

const adapter = new LocalWorkerAdapter()
const root = fileURLToPath(new URL('..', import.meta.url))

test('process.env written on the JS thread while jobs spawn never crashes Node (environ is read on the JS thread only)', () => {
  // Node's setenv reallocates `environ`; a spawn reading it from another thread died in strlen.
  const script = `
    const { LocalWorkerAdapter } = require(${JSON.stringify(root)})
    const adapter = new LocalWorkerAdapter()
    let i = 0
    const writer = setInterval(() => { for (let k = 0; k < 20; k++) process.env['LW_GROW_' + i++] = 'v'.repeat(64) }, 1)
    let done = 0, failed = 0
    const deadline = Date.now() + 3000
    async function loop(env) {
      while (Date.now() < deadline) {
        const r = await adapter.execute({ command: 'true', ...(env ? { env: { J: '1' } } : {}) }).catch((e) => { failed++; return e })
        done++
      }
    }
    Promise.all([...Array(8)].map((_, n) => loop(n % 2 === 0))).then(() => {
      clearInterval(writer)
      console.log(JSON.stringify({ done, failed, vars: i }))
    })
  `
  const result = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000 })
  assert.equal(result.signal, null, `Node died of ${result.signal}: ${result.stderr}`)
  assert.equal(result.status, 0, result.stderr)
  const { done, failed, vars } = JSON.parse(result.stdout)
  assert.ok(done > 100, `only ${done} jobs ran`)
  assert.ok(vars > 1000, `only ${vars} variables were written`)
  assert.equal(failed, 0, 'a spawn failed (a bogus EFAULT came from reading a moving environ)')
})

test('the environment is the one at the time of the call, not at spawn', async () => {
  const runs = []
  for (let i = 0; i < 50; i++) {
    delete process.env.LW_LATE
    const pending = adapter.execute({ command: 'sh', args: ['-c', 'printf %s "${LW_LATE-unset}"'] })
    process.env.LW_LATE = 'set after execute()'
    runs.push(pending)
  }
  const seen = (await Promise.all(runs)).map((r) => r.stdout)
  delete process.env.LW_LATE
  assert.deepEqual(new Set(seen), new Set(['unset']))
})

test('a relative cwd is taken against the working directory at the time of the call', async (t) => {
  const base = realpathSync(scratchDir('lw-relcwd-'))
  mkdirSync(join(base, 'a', 'sub'), { recursive: true })
  mkdirSync(join(base, 'b', 'sub'), { recursive: true })
  const before = process.cwd()
  t.after(() => process.chdir(before))
  process.chdir(join(base, 'a'))
  const pending = adapter.execute({ command: 'pwd', cwd: 'sub' })
  process.chdir(join(base, 'b'))
  assert.equal((await pending).stdout, `${join(base, 'a', 'sub')}\n`)
})

test('env: { SECRET: undefined } removes an inherited SECRET, as { ...process.env, ...job.env } did', async () => {
  process.env.LW_SECRET = 'do-not-leak'
  try {
    const result = await adapter.execute({
      command: 'sh',
      args: ['-c', 'printf %s "${LW_SECRET-removed}"'],
      env: { LW_SECRET: undefined, OTHER: 'x' },
    })
    assert.equal(result.stdout, 'removed')
  } finally {
    delete process.env.LW_SECRET
  }
})

test("children start with every signal at its default and an empty mask, whatever Node's are", async () => {
  // Node ignores SIGPIPE and SIGXFSZ; libuv resets both in its children, so do we.
  const grep = await adapter.execute({ command: 'grep', args: ['-E', '^Sig(Ign|Blk)', '/proc/self/status'] })
  assert.equal(grep.stdout, 'SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n')
})

test('a file-size limit kills with SIGXFSZ, as it would under a shell', async () => {
  const dir = scratchDir('lw-xfsz-')
  const result = await adapter.execute({
    command: 'sh',
    args: ['-c', `ulimit -f 1; exec head -c 100000 /dev/zero > ${join(dir, 'f')}`],
  })
  assert.equal(result.signal, 'SIGXFSZ')
  assert.equal(result.exitCode, 128 + 25)
})

test('an executable without a #! line runs through /bin/sh, as execvp does', async () => {
  const dir = scratchDir('lw-noshebang-')
  const script = join(dir, 'no-shebang')
  writeFileSync(script, 'echo "no shebang: $1 $2"\n')
  chmodSync(script, 0o755)
  const byPath = await adapter.execute({ command: script, args: ['a b', 'c'] })
  assert.equal(byPath.exitCode, 0, byPath.stderr)
  assert.equal(byPath.stdout, 'no shebang: a b c\n')
  const onPath = await adapter.execute({ command: 'no-shebang', args: ['x', 'y'], env: { PATH: `${dir}:/usr/bin:/bin` } })
  assert.equal(onPath.stdout, 'no shebang: x y\n')
})

test('each job leads a session of its own, with no controlling terminal', async () => {
  const result = await adapter.execute({ command: 'sh', args: ['-c', 'echo $$; cut -d" " -f6,7 /proc/self/stat'] })
  const [pid, line] = result.stdout.trim().split('\n')
  const [sid] = line.split(' ')
  assert.equal(Number(sid), Number(pid))
  assert.equal(Number(pid), result.pid)
})

test('under a terminal, a job that touches /dev/tty is not stopped by SIGTTOU', (t) => {
  // `script` gives Node a pty as its controlling terminal. In Node's session, a job in a
  // background process group that changes the terminal's modes is stopped by SIGTTOU and hangs
  // until its timeout; in a session of its own it has no terminal, so it fails fast instead.
  if (spawnSync('script', ['--version']).error) {
    t.skip('script (util-linux) is not installed')
    return
  }
  const code = `
    const { LocalWorkerAdapter } = require(${JSON.stringify(root)})
    new LocalWorkerAdapter().execute({ command: 'sh', args: ['-c', 'stty -echo < /dev/tty; echo "stty exited $?"'], timeout: 5000, killGracePeriod: 100 })
      .then((r) => console.log('RESULT', JSON.stringify({ stdout: r.stdout, timedOut: r.timedOut })), (e) => console.log('RESULT', JSON.stringify({ timedOut: e.timedOut, code: e.code })))
  `
  const file = join(scratchDir('lw-pty-'), 'job.cjs')
  writeFileSync(file, code)
  const started = performance.now()
  const run = spawnSync('script', ['-qec', `${process.execPath} ${file}`, '/dev/null'], {
    encoding: 'utf8',
    timeout: 30_000,
  })
  const line = run.stdout.split(/\r?\n/).find((l) => l.startsWith('RESULT '))
  assert.ok(line, `no result: ${run.stdout} ${run.stderr}`)
  const outcome = JSON.parse(line.slice('RESULT '.length))
  assert.equal(outcome.timedOut, false, `the job hung until its timeout: ${line}`)
  assert.match(outcome.stdout, /stty exited [1-9]/)
  assert.ok(performance.now() - started < 4000)
})

test('any positive timeout is a limit, however small', async () => {
  for (const timeout of [1e-10, Number.MIN_VALUE, 0.0001]) {
    const error = await rejection(adapter.execute({ command: 'sleep', args: ['5'], timeout, killGracePeriod: 100 }))
    assert.equal(error.code, 'ETIMEDOUT', `timeout ${timeout}`)
    assert.equal(error.timedOut, true)
  }
})
