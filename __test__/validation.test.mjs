// Bad input: always a rejected Promise with a TypeError/RangeError naming the field.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'

import { LocalWorkerAdapter } from './helpers.mjs'

const adapter = new LocalWorkerAdapter()

/** Calls execute without letting it throw past us, and checks it returned a Promise. */
function settle(job) {
  let promise
  assert.doesNotThrow(() => { promise = adapter.execute(job) })
  assert.ok(promise instanceof Promise)
  return promise.then((value) => ({ value }), (error) => ({ error }))
}

const cases = [
  ['job missing', undefined, TypeError, 'job'],
  ['job null', null, TypeError, 'job'],
  ['job a string', 'ls', TypeError, 'job'],
  ['job an array', ['ls'], TypeError, 'job'],
  ['command missing', {}, TypeError, 'job.command'],
  ['command empty', { command: '' }, TypeError, 'job.command'],
  ['command not a string', { command: 42 }, TypeError, 'job.command'],
  ['args not an array', { command: 'true', args: 'a b' }, TypeError, 'job.args'],
  ['args with a number', { command: 'true', args: ['a', 2] }, TypeError, 'job.args[1]'],
  ['env not an object', { command: 'true', env: 'A=1' }, TypeError, 'job.env'],
  ['env an array', { command: 'true', env: ['A=1'] }, TypeError, 'job.env'],
  ['env with a number', { command: 'true', env: { A: 1 } }, TypeError, 'job.env["A"]'],
  ['NUL in command', { command: 'tr\0ue' }, TypeError, 'job.command'],
  ['NUL in args', { command: 'true', args: ['ok', 'b\0d'] }, TypeError, 'job.args[1]'],
  ['NUL in env value', { command: 'true', env: { A: 'x\0y' } }, TypeError, 'job.env["A"]'],
  ['NUL in env key', { command: 'true', env: { 'A\0B': 'x' } }, TypeError, 'job.env["A\\0B"]'],
  ['NUL in cwd', { command: 'true', cwd: '/tmp\0' }, TypeError, 'job.cwd'],
  ['= in env key', { command: 'true', env: { 'A=B': 'x' } }, TypeError, 'job.env["A=B"]'],
  ['cwd not a string', { command: 'true', cwd: 1 }, TypeError, 'job.cwd'],
  ['timeout negative', { command: 'true', timeout: -1 }, RangeError, 'job.timeout'],
  ['timeout NaN', { command: 'true', timeout: NaN }, RangeError, 'job.timeout'],
  ['timeout infinite', { command: 'true', timeout: Infinity }, RangeError, 'job.timeout'],
  ['timeout a string', { command: 'true', timeout: '100' }, TypeError, 'job.timeout'],
  ['onStdout not a function', { command: 'true', onStdout: 'log' }, TypeError, 'job.onStdout'],
  ['onStderr not a function', { command: 'true', onStderr: {} }, TypeError, 'job.onStderr'],
  ['signal not an object', { command: 'true', signal: true }, TypeError, 'job.signal'],
  ['signal a plain object', { command: 'true', signal: {} }, TypeError, 'job.signal'],
  ['maxBuffer fractional', { command: 'true', maxBuffer: 1.5 }, RangeError, 'job.maxBuffer'],
  ['killGracePeriod negative', { command: 'true', killGracePeriod: -5 }, RangeError, 'job.killGracePeriod'],
  ['killLeftovers not a boolean', { command: 'true', killLeftovers: 'yes' }, TypeError, 'job.killLeftovers'],
]

for (const [name, job, ErrorClass, field] of cases) {
  test(`rejects: ${name}`, async () => {
    const { error } = await settle(job)
    assert.ok(error instanceof ErrorClass, `${error}`)
    assert.equal(error.field, field)
    assert.ok(error.message.startsWith(field), error.message)
    assert.match(error.code, /^ERR_(INVALID_ARG_TYPE|INVALID_ARG_VALUE|OUT_OF_RANGE)$/)
  })
}

test('a throwing getter rejects with what it threw', async () => {
  const boom = new Error('getter exploded')
  const job = { get command() { throw boom } }
  const { error } = await settle(job)
  assert.equal(error, boom)
})

test('execute called without this adapter keeps working afterwards', async () => {
  const { value } = await settle({ command: 'true' })
  assert.equal(value.exitCode, 0)
})

test('constructor options are validated and name the field', () => {
  assert.throws(() => new LocalWorkerAdapter({ maxBuffer: -1 }), (e) => e instanceof RangeError && e.field === 'options.maxBuffer')
  assert.throws(() => new LocalWorkerAdapter('fast'), (e) => e instanceof TypeError && e.field === 'options')
  assert.equal(typeof new LocalWorkerAdapter({ killGracePeriod: 100, killLeftovers: false }).execute, 'function')
})

// Property: whatever is thrown at execute, it returns a Promise; a rejection is an Error
// that names a field (or a spawn error with an OS code); Node survives; the adapter still works.
const anything = fc.anything({ withBigInt: true, withNullPrototype: true, withObjectString: true, withTypedArray: true })
const field = (arb) => fc.option(arb, { nil: undefined })
const jobish = fc.record({
  command: fc.oneof(fc.string(), anything, fc.constantFrom('true', 'false', 'sh', '/bin/echo', '')),
  args: field(fc.oneof(fc.array(fc.string()), fc.array(anything), anything)),
  env: field(fc.oneof(fc.dictionary(fc.string(), fc.string()), anything)),
  cwd: field(fc.oneof(fc.constantFrom('/', '/tmp', '/nonexistent'), fc.string(), anything)),
  timeout: field(fc.oneof(fc.double(), fc.integer(), anything)),
  meta: field(anything),
  onStdout: field(fc.oneof(fc.constant(() => {}), anything)),
  onStderr: field(fc.oneof(fc.constant(() => {}), anything)),
  signal: field(fc.oneof(fc.constant(AbortSignal.abort()), fc.constant(new AbortController().signal), anything)),
  maxBuffer: field(fc.oneof(fc.integer(), fc.double(), anything)),
}, { requiredKeys: [] })

test('property: thousands of malformed and random jobs never throw or crash', async () => {
  const osCodes = new Set(['ENOENT', 'EACCES', 'ENOTDIR', 'ENOEXEC', 'ETIMEDOUT', 'ABORT_ERR', 'E2BIG', 'ENAMETOOLONG', 'ELOOP', 'EISDIR'])
  await fc.assert(
    fc.asyncProperty(fc.oneof(jobish, anything), async (job) => {
      // Keep random jobs short: a random timeout must not keep a `sh` waiting on stdin.
      const { value, error } = await settle(job)
      if (error === undefined) {
        assert.equal(typeof value.exitCode, 'number')
        return
      }
      assert.ok(error instanceof Error, `rejected with a non-Error: ${String(error)}`)
      if (error instanceof TypeError || error instanceof RangeError) {
        assert.equal(typeof error.field, 'string', error.message)
        assert.ok(error.message.includes(error.field), error.message)
      } else {
        assert.ok(osCodes.has(error.code), `unexpected error ${error.code}: ${error.message}`)
      }
    }),
    { numRuns: 3000 },
  )
  const { value } = await settle({ command: 'sh', args: ['-c', 'echo still working'] })
  assert.equal(value.stdout, 'still working\n')
})
