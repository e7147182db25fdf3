// Output in every encoding: text exactly as `Buffer#toString('utf8')` gives it for any bytes
// (valid UTF-8, random bytes, any split, any maxBuffer), and `encoding: 'buffer'` for bytes.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { LocalWorkerAdapter, nativeOnly, rejection, scratchDir } from './helpers.mjs'

const adapter = new LocalWorkerAdapter()
const MiB = 1024 * 1024
const dir = scratchDir('lw-encoding-')

/** A file holding `bytes`, for `cat`. */
function file(name, bytes) {
  const path = join(dir, name)
  writeFileSync(path, bytes)
  return path
}

const random = randomBytes(4 * MiB)
const randomFile = file('random.bin', random)
const mixed = Buffer.from('frame é 漢字 😀 naïve \uFFFD done\n'.repeat(40000))
const mixedFile = file('mixed.txt', mixed)

/** The characters of the whole stream's decoding that start in its last `max` bytes. */
function expectedTail(bytes, max) {
  const whole = bytes.toString('utf8')
  for (let at = Math.max(0, bytes.length - max); at <= bytes.length; at++) {
    const head = bytes.subarray(0, at).toString('utf8')
    if (whole.startsWith(head) && bytes.subarray(at).toString('utf8') === whole.slice(head.length)) {
      return { text: whole.slice(head.length), dropped: at }
    }
  }
  throw new Error('unreachable: the end is a character boundary')
}

for (const [name, bytes, path] of [['random bytes', random, randomFile], ['valid UTF-8 with é, 漢, emoji', mixed, mixedFile]]) {
  test(`${name}: the result and the callback pieces equal the whole stream decoded at once`, async () => {
    const pieces = []
    const result = await adapter.execute({ command: 'cat', args: [path], onStdout: (d) => pieces.push(d) })
    const expected = bytes.toString('utf8')
    assert.equal(result.stdout.length, expected.length)
    assert.ok(result.stdout === expected, 'stdout differs from Buffer#toString')
    assert.ok(pieces.join('') === expected, 'callback pieces differ')
    for (const piece of pieces) assert.ok(Buffer.byteLength(piece) <= 64 * 1024, `a piece of ${Buffer.byteLength(piece)} bytes`)
  })
}

test('random bytes written one odd-sized write at a time decode as the whole does', async () => {
  const bytes = randomBytes(20000)
  const path = file('small-random.bin', bytes)
  // dd with a 7-byte block: every read boundary splits sequences somewhere.
  const pieces = []
  const result = await adapter.execute({ command: 'dd', args: [`if=${path}`, 'bs=7', 'status=none'], onStdout: (d) => pieces.push(d) })
  assert.equal(result.stdout, bytes.toString('utf8'))
  assert.equal(pieces.join(''), result.stdout)
})

test('maxBuffer on text: the characters that start in the last maxBuffer bytes, exactly', async () => {
  const bytes = Buffer.concat([randomBytes(3000), Buffer.from('é漢😀\u00ff'.repeat(50)), randomBytes(200)])
  const path = file('tail.bin', bytes)
  const limits = [0, 1, 2, 3, 5, 17, 64, 199, 200, 201, 333, 1000, 1001, 1002, 3399, bytes.length - 1, bytes.length, bytes.length + 5]
  for (const max of limits) {
    const result = await adapter.execute({ command: 'cat', args: [path], maxBuffer: max })
    const { text, dropped } = expectedTail(bytes, max)
    assert.equal(result.stdoutDroppedBytes, dropped, `maxBuffer ${max}`)
    assert.ok(result.stdout === text, `maxBuffer ${max}: the kept text differs`)
  }
})

test("encoding 'buffer': stdout, stderr and callback pieces are Buffers of the exact bytes", async () => {
  const pieces = []
  const result = await adapter.execute({
    command: 'sh',
    args: ['-c', `cat ${randomFile}; printf '\\377\\000e' >&2`],
    encoding: 'buffer',
    onStdout: (d) => pieces.push(d),
  })
  assert.ok(Buffer.isBuffer(result.stdout) && Buffer.isBuffer(result.stderr))
  assert.ok(result.stdout.equals(random), 'stdout differs from the bytes written')
  assert.deepEqual([...result.stderr], [0xff, 0x00, 0x65])
  assert.ok(pieces.length > 1 && pieces.every((p) => Buffer.isBuffer(p)))
  assert.ok(Buffer.concat(pieces).equals(random), 'callback pieces differ')
  const empty = await adapter.execute({ command: 'true', encoding: 'buffer' })
  assert.ok(Buffer.isBuffer(empty.stdout) && empty.stdout.length === 0)
})

test("encoding 'buffer' with maxBuffer keeps exactly the last bytes (no character boundary)", async () => {
  const result = await adapter.execute({ command: 'cat', args: [mixedFile], encoding: 'buffer', maxBuffer: 1001 })
  assert.ok(result.stdout.equals(mixed.subarray(mixed.length - 1001)))
  assert.equal(result.stdoutDroppedBytes, mixed.length - 1001)
})

test("the adapter's encoding is every job's default; a job overrides it", async () => {
  const buffers = new LocalWorkerAdapter({ encoding: 'buffer' })
  const bytes = await buffers.execute({ command: 'printf', args: ['\\303\\251'] })
  assert.deepEqual([...bytes.stdout], [0xc3, 0xa9])
  const text = await buffers.execute({ command: 'printf', args: ['\\303\\251'], encoding: 'utf8' })
  assert.equal(text.stdout, 'é')
})

test("a timed-out 'buffer' job rejects with its partial output as Buffers", async () => {
  const error = await rejection(adapter.execute({ command: 'sh', args: ['-c', 'printf abc; sleep 5'], encoding: 'buffer', timeout: 300 }))
  assert.equal(error.code, 'ETIMEDOUT')
  assert.ok(Buffer.isBuffer(error.stdout))
  assert.equal(error.stdout.toString(), 'abc')
  assert.ok(Buffer.isBuffer(error.stderr))
})

const badEncodings = [
  ['a number', 8, TypeError, 'ERR_INVALID_ARG_TYPE'],
  ['an unknown name', 'latin1', TypeError, 'ERR_INVALID_ARG_VALUE'],
  ['a different spelling', 'UTF8', TypeError, 'ERR_INVALID_ARG_VALUE'],
  ['an object', {}, TypeError, 'ERR_INVALID_ARG_TYPE'],
]
for (const [name, value, ErrorClass, code] of badEncodings) {
  test(`encoding ${name} is an error naming the field`, async () => {
    const error = await rejection(adapter.execute({ command: 'true', encoding: value }))
    assert.ok(error instanceof ErrorClass)
    assert.equal(error.code, code)
    assert.equal(error.field, 'job.encoding')
    assert.match(error.message, /^job\.encoding must be 'utf8' or 'buffer'/)
    assert.throws(() => new LocalWorkerAdapter({ encoding: value }), (e) => e.field === 'options.encoding' && e.code === code)
  })
}

const root = fileURLToPath(new URL('..', import.meta.url))
test('both implementations reject bad jobs with the same errors', { skip: nativeOnly('compares the native implementation with the JS one') }, () => {
  const jobs = `[
    { command: 'true', encoding: 8 }, { command: 'true', encoding: 'latin1' }, { command: 'true', encoding: 'a"\\\\0' },
    { command: 'true', maxBuffer: 2 ** 29 }, { command: 'true', timeout: -1 }, { command: 'true', env: { 'A=B': 'x' } },
    { command: 'true', args: ['a', 1] }, { command: '' }, { command: 'true', onStdout: 1 }, { command: 'true', killLeftovers: 'no' },
  ]`
  const script = `
    const { LocalWorkerAdapter, implementation } = require(${JSON.stringify(root)})
    const adapter = new LocalWorkerAdapter()
    Promise.all(${jobs}.map((job) => adapter.execute(job).then(() => null, (e) => ({ name: e.name, code: e.code, field: e.field, message: e.message }))))
      .then((errors) => console.log(JSON.stringify({ implementation, errors })))`
  const run = (which) => {
    const out = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, LOCAL_WORKER_IMPLEMENTATION: which }, encoding: 'utf8' })
    assert.equal(out.status, 0, out.stderr)
    return JSON.parse(out.stdout)
  }
  const native = run('native')
  const js = run('js')
  assert.equal(native.implementation, 'native')
  assert.equal(js.implementation, 'js')
  assert.ok(native.errors.every((e) => e !== null))
  assert.deepEqual(js.errors, native.errors)
})

test('a binary tail larger than V8 accepts as UTF-8 input comes back (1 GiB of UTF-16)', { timeout: 120_000 }, async () => {
  // 600 MiB of random bytes with maxBuffer at its maximum: the kept 2^29 - 24 bytes decode to
  // about 500 million characters, past the 2^29 - 24 bytes V8 takes as UTF-8 input.
  const max = 2 ** 29 - 24
  const result = await adapter.execute({ command: 'head', args: ['-c', String(600 * MiB), '/dev/urandom'], maxBuffer: max })
  assert.equal(result.exitCode, 0)
  assert.ok(result.stdout.length > 450_000_000 && result.stdout.length <= max, `${result.stdout.length} characters`)
  assert.ok(result.stdoutDroppedBytes >= 600 * MiB - max && result.stdoutDroppedBytes <= 600 * MiB - max + 3)
})
