// Per-job resource usage: the kernel's figures (wait4), for every outcome.
import { test } from 'node:test'
import assert from 'node:assert/strict'

import { LocalWorkerAdapter, implementation, nativeOnly, rejection } from './helpers.mjs'

const adapter = new LocalWorkerAdapter()
const python = (code) => ({ command: 'python3', args: ['-c', code] })
// child_process reaps its children itself and exposes no rusage for them: the JS
// implementation reports no resourceUsage.
const skip = nativeOnly('resourceUsage (child_process does not expose a child\'s rusage)')

test('maxRssKb reflects memory the child touched', { skip }, async () => {
  const base = await adapter.execute(python('pass'))
  const result = await adapter.execute(python('b = bytearray(200 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1'))
  const { maxRssKb } = result.resourceUsage
  assert.ok(maxRssKb >= 200 * 1024, `${maxRssKb}`)
  // Not wildly above: the interpreter's own footprint plus the 200 MiB.
  assert.ok(maxRssKb < base.resourceUsage.maxRssKb + 240 * 1024, `${maxRssKb} vs base ${base.resourceUsage.maxRssKb}`)
})

test('a CPU-bound child of ~300 ms shows that much user CPU; a sleeping one almost none', { skip }, async () => {
  const busy = await adapter.execute(python('import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass'))
  const { userCpuMs, systemCpuMs } = busy.resourceUsage
  assert.ok(userCpuMs + systemCpuMs >= 280, `${userCpuMs} + ${systemCpuMs}`)
  assert.ok(userCpuMs < 2000, `${userCpuMs}`)
  const idle = await adapter.execute({ command: 'sleep', args: ['0.3'] })
  assert.ok(idle.durationMs >= 300)
  assert.ok(idle.resourceUsage.userCpuMs + idle.resourceUsage.systemCpuMs < 50, JSON.stringify(idle.resourceUsage))
})

test('descendants the main process waited for are counted', { skip }, async () => {
  const result = await adapter.execute({
    command: 'sh',
    args: ['-c', `python3 -c "import time
t = time.process_time()
while time.process_time() - t < 0.3: pass"`],
  })
  assert.ok(result.resourceUsage.userCpuMs + result.resourceUsage.systemCpuMs >= 280, JSON.stringify(result.resourceUsage))
})

test('timed-out and aborted jobs report usage, pid, signal and flags too', async () => {
  // Runs under both implementations: pid, signal and flags are common to them; the usage
  // figures are checked where they exist (the JS implementation has no resourceUsage).
  const reportsUsage = implementation === 'native'
  const burn = python('while True: pass')
  const timedOut = await rejection(adapter.execute({ ...burn, timeout: 400 }))
  assert.equal(timedOut.timedOut, true)
  assert.equal(timedOut.aborted, false)
  assert.equal(timedOut.signal, 'SIGTERM')
  assert.equal(typeof timedOut.pid, 'number')
  if (reportsUsage) assert.ok(timedOut.resourceUsage.userCpuMs > 100, JSON.stringify(timedOut.resourceUsage))
  else assert.equal(timedOut.resourceUsage, undefined)

  const controller = new AbortController()
  setTimeout(() => controller.abort(), 400)
  const aborted = await rejection(adapter.execute({ ...burn, signal: controller.signal }))
  assert.equal(aborted.aborted, true)
  assert.equal(aborted.timedOut, false)
  if (reportsUsage) {
    assert.ok(aborted.resourceUsage.userCpuMs > 100, JSON.stringify(aborted.resourceUsage))
    assert.ok(aborted.resourceUsage.maxRssKb > 1000)
  } else {
    assert.equal(aborted.resourceUsage, undefined)
  }
})

test('a job killed by a signal still reports its usage', { skip }, async () => {
  const result = await adapter.execute(python('import os, signal\nb = bytearray(50 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\nos.kill(os.getpid(), signal.SIGKILL)'))
  assert.equal(result.signal, 'SIGKILL')
  assert.ok(result.resourceUsage.maxRssKb >= 50 * 1024, JSON.stringify(result.resourceUsage))
})
