// Output capture: UTF-8 decoding across reads, callbacks, bounded buffers.
import { test } from 'node:test'
import assert from 'node:assert/strict'

import { LocalWorkerAdapter, rejection } from './helpers.mjs'

const adapter = new LocalWorkerAdapter()

test('a character split across two writes 50 ms apart is decoded whole, in callbacks too', async () => {
  const seen = { out: [], err: [] }
  const result = await adapter.execute({
    command: 'sh',
    args: ['-c', String.raw`printf '\303'; printf '\342\202' >&2; sleep 0.05; printf '\251!'; printf '\254!' >&2`],
    onStdout: (d) => seen.out.push(d),
    onStderr: (d) => seen.err.push(d),
  })
  assert.equal(result.stdout, 'é!')
  assert.equal(result.stderr, '€!')
  assert.equal(seen.out.join(''), 'é!')
  assert.equal(seen.err.join(''), '€!')
  for (const piece of [...seen.out, ...seen.err]) assert.ok(!piece.includes('\uFFFD'), piece)
})

test('invalid bytes become U+FFFD, the same in the result and in the callbacks', async () => {
  const pieces = []
  const result = await adapter.execute({
    command: 'sh',
    args: ['-c', String.raw`printf 'a\377b\300\257c'; sleep 0.02; printf '\342\202'`],
    onStdout: (d) => pieces.push(d),
  })
  assert.equal(result.stdout, Buffer.from([0x61, 0xff, 0x62, 0xc0, 0xaf, 0x63, 0xe2, 0x82]).toString('utf8'))
  assert.equal(result.stdout, 'a\uFFFDb\uFFFD\uFFFDc\uFFFD')
  assert.equal(pieces.join(''), result.stdout)
})

test('callbacks get output as it arrives, in order, all before the promise settles', async () => {
  const events = []
  const started = performance.now()
  const promise = adapter.execute({
    command: 'sh',
    args: ['-c', 'for i in 1 2 3 4 5; do echo line-$i; echo e-$i >&2; sleep 0.1; done'],
    onStdout: (d) => events.push(['out', d, performance.now() - started]),
    onStderr: (d) => events.push(['err', d, performance.now() - started]),
  })
  let settled = false
  promise.then(() => { settled = true })
  await new Promise((resolve) => setTimeout(resolve, 250))
  assert.ok(events.length > 0, 'output arrived while the job ran')
  assert.equal(settled, false)
  const result = await promise
  const out = events.filter(([s]) => s === 'out').map(([, d]) => d).join('')
  const err = events.filter(([s]) => s === 'err').map(([, d]) => d).join('')
  assert.equal(out, result.stdout)
  assert.equal(err, result.stderr)
  assert.equal(out, [1, 2, 3, 4, 5].map((i) => `line-${i}\n`).join(''))
  // Streamed, not delivered at the end: the first line came long before the last.
  const firstOut = events.find(([s]) => s === 'out')[2]
  const lastOut = events.filter(([s]) => s === 'out').at(-1)[2]
  assert.ok(lastOut - firstOut > 200, `${firstOut} .. ${lastOut}`)
})

test('large output with callbacks: concatenated callbacks equal the result', async () => {
  let total = ''
  const result = await adapter.execute({
    command: 'python3',
    args: ['-c', "import sys\nfor i in range(200000): sys.stdout.write('%d é€😀\\n' % i)"],
    onStdout: (d) => { total += d },
  })
  assert.equal(total, result.stdout)
  assert.equal(result.stdout.split('\n').length, 200001)
  assert.ok(!result.stdout.includes('\uFFFD'))
})

test('maxBuffer keeps the most recent bytes and counts what was dropped; callbacks see all', async () => {
  let seen = 0
  const result = await adapter.execute({
    command: 'sh',
    args: ['-c', "head -c 1000000 /dev/zero | tr '\\0' a; printf 'é-END'"],
    maxBuffer: 1000,
    onStdout: (d) => { seen += d.length },
  })
  assert.equal(seen, 1000000 + 5)
  // 1000 bytes from the end starts inside nothing: 'é' is 2 bytes, all kept.
  assert.equal(Buffer.byteLength(result.stdout), 1000)
  assert.ok(result.stdout.endsWith('aé-END'))
  assert.equal(result.stdoutDroppedBytes, 1000000 + 6 - 1000)
  assert.equal(result.stderrDroppedBytes, 0)
})

test('the kept tail never starts inside a character', async () => {
  const result = await adapter.execute({ command: 'sh', args: ['-c', "printf 'xé€'"], maxBuffer: 4 })
  // The last 4 bytes begin with é's second byte, which is dropped too.
  assert.equal(result.stdout, '€')
  assert.equal(result.stdoutDroppedBytes, 3)
})

test('output larger than a V8 string neither crashes nor fails a job within its limit', async () => {
  // 600 MiB: more than V8's longest string (just under 512 MiB); the default maxBuffer keeps 100 MiB.
  const result = await adapter.execute({ command: 'head', args: ['-c', String(600 * 1024 * 1024), '/dev/zero'] })
  assert.equal(result.exitCode, 0)
  assert.equal(result.stdout.length, 100 * 1024 * 1024)
  assert.equal(result.stdoutDroppedBytes, 500 * 1024 * 1024)
})

test('a maxBuffer beyond what a JS string can hold is a RangeError naming the field', async () => {
  const error = await rejection(adapter.execute({ command: 'true', maxBuffer: 2 ** 29 }))
  assert.ok(error instanceof RangeError)
  assert.equal(error.field, 'job.maxBuffer')
  assert.match(error.message, /maxBuffer/)
})

test('large ASCII output (handed to V8 without a copy) stays intact through GC', async () => {
  const expected = Array.from({ length: 100000 }, (_, i) => `line ${i} of ascii output\n`).join('')
  const chunks = []
  const result = await adapter.execute({
    command: 'python3',
    args: ['-c', "import sys\nfor i in range(100000): sys.stdout.write('line %d of ascii output\\n' % i)"],
    onStdout: (d) => chunks.push(d),
  })
  globalThis.gc?.()
  await new Promise((resolve) => setTimeout(resolve, 10))
  globalThis.gc?.()
  assert.equal(result.stdout.length, expected.length)
  assert.equal(result.stdout, expected)
  assert.equal(chunks.join(''), expected)
})

test('callbacks receive pieces of at most 64 KiB, cut at character boundaries', async () => {
  const pieces = []
  const result = await adapter.execute({
    command: 'python3',
    args: ['-c', "import sys\nsys.stdout.write('é' * 300000)"],
    onStdout: (d) => pieces.push(d),
  })
  assert.equal(result.stdout, 'é'.repeat(300000))
  assert.equal(pieces.join(''), result.stdout)
  assert.ok(pieces.length >= 10, `${pieces.length} pieces`)
  for (const piece of pieces) {
    assert.ok(Buffer.byteLength(piece) <= 64 * 1024, `${Buffer.byteLength(piece)}`)
    assert.ok(!piece.includes('\uFFFD'))
  }
})
