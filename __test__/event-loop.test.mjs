// Output deliveries yield to the event loop: a slow callback slows the child (through the pipe),
// never timers, I/O or signal delivery in Node.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createServer, get } from 'node:http'
import { fileURLToPath } from 'node:url'

import { LocalWorkerAdapter, killAll, marker, nativeOnly, processesWith, rejection, sleep } from './helpers.mjs'

const adapter = new LocalWorkerAdapter()
const root = fileURLToPath(new URL('..', import.meta.url))

function busyWait(ms) {
  const until = performance.now() + ms
  while (performance.now() < until);
}

test('a slow onStdout callback does not starve timers or I/O', async (t) => {
  const server = createServer((req, res) => res.end('pong'))
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => server.close())
  const { port } = server.address()
  const ping = () =>
    new Promise((resolve, reject) => {
      const started = performance.now()
      get({ host: '127.0.0.1', port, path: '/' }, (res) => {
        res.resume()
        res.on('end', () => resolve(performance.now() - started))
      }).on('error', reject)
    })

  let ticks = 0
  const interval = setInterval(() => ticks++, 100)
  const job = rejection(adapter.execute({ command: 'yes', timeout: 3000, killGracePeriod: 500, onStdout: () => busyWait(2) }))
  await sleep(500)
  const latency = await ping()
  const error = await job
  clearInterval(interval)
  assert.equal(error.code, 'ETIMEDOUT')
  // child_process ticks ~20 times here; before the fix this was 0-1.
  assert.ok(ticks >= 10, `a 100 ms interval ticked ${ticks} times in 3 s`)
  assert.ok(latency < 1000, `a local HTTP request took ${Math.round(latency)} ms`)
})

test('SIGTERM still ends Node while a slow callback is being fed', async (t) => {
  const mark = marker('slow-callback-sigterm')
  t.after(() => killAll(mark))
  const code = `
    const { LocalWorkerAdapter } = require(${JSON.stringify(root)})
    const busyWait = ${busyWait.toString()}
    new LocalWorkerAdapter().execute({ command: 'sh', args: ['-c', 'yes', ${JSON.stringify(mark)}], onStdout: () => busyWait(2) })
    console.log('started')
  `
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise((resolve) => child.stdout.once('data', resolve))
  await sleep(700)
  const sent = performance.now()
  child.kill('SIGTERM')
  const [status, signal] = await Promise.race([
    new Promise((resolve) => child.once('exit', (c, s) => resolve([c, s]))),
    sleep(5000).then(() => [null, 'still running']),
  ])
  if (signal === 'still running') child.kill('SIGKILL')
  assert.equal(signal, 'SIGTERM', `Node ended with ${status}/${signal}`)
  assert.ok(performance.now() - sent < 3000)
  await sleep(200)
  assert.deepEqual(processesWith(mark), [])
})

test('capturing 64 MiB of random bytes does not block the loop (decoded off the JS thread)', { skip: nativeOnly('decoding on the reading threads') }, async () => {
  // Before, the result was decoded on the JS thread when the job settled: ~1 s blocked here.
  let last = performance.now()
  let gap = 0
  const ticker = setInterval(() => {
    const now = performance.now()
    gap = Math.max(gap, now - last)
    last = now
  }, 5)
  const result = await adapter.execute({ command: 'head', args: ['-c', String(64 * 1024 * 1024), '/dev/urandom'], maxBuffer: 64 * 1024 * 1024 })
  gap = Math.max(gap, performance.now() - last)
  clearInterval(ticker)
  assert.equal(result.exitCode, 0)
  assert.ok(result.stdout.length > 60_000_000, `${result.stdout.length}`)
  assert.ok(gap < 250, `the event loop was blocked for ${Math.round(gap)} ms`)
})
