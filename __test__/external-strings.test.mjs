// ASCII results are external strings over our buffer (no copy into the V8 heap), within a budget
// of not-yet-collected bytes that V8 gives back as it collects them.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setImmediate as turn } from 'node:timers/promises'

import { LocalWorkerAdapter, nativeOnly } from './helpers.mjs'

const adapter = new LocalWorkerAdapter()
const MiB = 1024 * 1024

/** Collects garbage and lets finalizers that Node defers to the loop run. */
async function collect() {
  for (let i = 0; i < 3; i++) {
    globalThis.gc()
    await turn()
  }
}

/** How much the V8 heap grew while holding one 64 MiB ASCII result. */
async function heapGrowthOf64MiB() {
  await collect()
  const before = process.memoryUsage().heapUsed
  const result = await adapter.execute({ command: 'head', args: ['-c', String(64 * MiB), '/dev/zero'], maxBuffer: 64 * MiB })
  const grown = process.memoryUsage().heapUsed - before
  assert.equal(result.stdout.length, 64 * MiB)
  return grown
}

test('a 64 MiB ASCII result is still external after 1 GiB of collected results', { skip: nativeOnly('zero-copy external strings') || (globalThis.gc ? false : 'needs --expose-gc') }, async () => {
  // /dev/zero gives NUL bytes: ASCII. An external string leaves the V8 heap (almost) unchanged;
  // a copied one grows it by its length.
  assert.ok(await heapGrowthOf64MiB() < 16 * MiB, 'the first result was copied')
  for (let i = 0; i < 16; i++) {
    const r = await adapter.execute({ command: 'head', args: ['-c', String(64 * MiB), '/dev/zero'], maxBuffer: 64 * MiB })
    assert.equal(r.stdout.length, 64 * MiB)
    await collect()
  }
  const grown = await heapGrowthOf64MiB()
  assert.ok(grown < 16 * MiB, `after 1 GiB of collected results the heap grew by ${Math.round(grown / MiB)} MiB: copied, the budget was not given back`)
})

test('non-ASCII results are external too: Latin-1 (é) and UTF-16 (漢, U+FFFD)', { skip: nativeOnly('zero-copy external strings') || (globalThis.gc ? false : 'needs --expose-gc') }, async () => {
  for (const [what, printf, perLine] of [['Latin-1', 'é-line', 'é-line\n'], ['UTF-16', '漢-line', '漢-line\n']]) {
    await collect()
    const lines = 4 * 1024 * 1024
    const before = process.memoryUsage().heapUsed
    const result = await adapter.execute({ command: 'sh', args: ['-c', `yes ${printf} | head -n ${lines}`], maxBuffer: 64 * MiB })
    const grown = process.memoryUsage().heapUsed - before
    assert.equal(result.stdout.length, lines * perLine.length)
    assert.ok(result.stdout.startsWith(perLine) && result.stdout.endsWith(perLine))
    assert.ok(grown < 8 * MiB, `${what}: the heap grew by ${Math.round(grown / MiB)} MiB: the result was copied`)
  }
})

test('dropped results do not pile up: 40 results of 64 MiB, peak RSS stays bounded', async () => {
  // V8 does not see an external string's data; without telling it (napi_adjust_external_memory)
  // this peaked 890 MB above the start, past the external budget, in copies nobody collected.
  const start = process.memoryUsage().rss
  let peak = start
  for (let i = 0; i < 40; i++) {
    const r = await adapter.execute({ command: 'head', args: ['-c', String(64 * MiB), '/dev/zero'], maxBuffer: 64 * MiB })
    assert.equal(r.stdout.length, 64 * MiB)
    peak = Math.max(peak, process.memoryUsage().rss)
  }
  assert.ok(peak - start < 512 * MiB, `peak RSS ${Math.round((peak - start) / MiB)} MiB above the start`)
})
