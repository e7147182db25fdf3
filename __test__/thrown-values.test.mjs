// Whatever JS throws at us comes back exactly as thrown, and the promise always settles:
// Symbols, primitives, undefined, revoked Proxies and objects whose getters throw, thrown by a
// callback, given as an abort reason, or thrown by a getter of the job or of the options.
// (Each of these once left the native promise pending, threw synchronously, or replaced the
// value with "Create Error reference failed".)
import test from 'node:test'
import assert from 'node:assert/strict'

import { LocalWorkerAdapter, rejection } from './helpers.mjs'

const adapter = new LocalWorkerAdapter()
/** Long enough for a job of `echo`, short enough that a hang fails the test instead of the run. */
const BOUND_MS = 5000

/** A Proxy that throws a TypeError on any operation. */
function revokedProxy() {
  const { proxy, revoke } = Proxy.revocable({}, {})
  revoke()
  return proxy
}

/** An object whose `message` (and `cause`, `name`, `stack`) getters throw. */
function throwingGetters() {
  const boom = () => { throw new Error('getter exploded') }
  return {
    get message() { return boom() },
    get cause() { return boom() },
    get name() { return boom() },
    get stack() { return boom() },
    toString: boom,
    [Symbol.toPrimitive]: boom,
  }
}

/**
 * Calls `execute(job)`: it must not throw synchronously and must return a Promise, which must
 * reject within the bound. Resolves with `{ reason }`, the rejection value, whatever it is (boxed:
 * a revoked Proxy cannot pass through a promise's resolution, which reads its `then`).
 */
async function rejectionOf(job, target = adapter) {
  let promise
  try {
    promise = target.execute(job)
  } catch (thrown) {
    assert.fail(`execute threw synchronously: ${describe(thrown)}`)
  }
  assert.ok(promise instanceof Promise, 'execute returned a Promise')
  let timer
  const pending = Symbol('pending')
  const outcome = await Promise.race([
    rejection(promise.catch((reason) => { throw { reason } })),
    new Promise((resolve) => { timer = setTimeout(() => resolve(pending), BOUND_MS) }),
  ])
  clearTimeout(timer)
  assert.notEqual(outcome, pending, `the promise was still pending after ${BOUND_MS} ms`)
  return outcome
}

/** A printable form of any value (never throws). */
function describe(value) {
  try {
    return typeof value === 'symbol' ? value.toString() : String(value?.message ?? value)
  } catch {
    return Object.prototype.toString.call(value)
  }
}

/** The adapter still runs jobs normally. */
async function stillWorks(target = adapter) {
  const result = await target.execute({ command: 'echo', args: ['still works'] })
  assert.equal(result.exitCode, 0)
  assert.equal(result.stdout, 'still works\n')
}

/** Collects the process warnings (DEP0168 "Uncaught N-API callback exception") and uncaught exceptions of a test. */
function watchProcess(t) {
  const seen = []
  const onWarning = (w) => seen.push(`warning: ${w.code ?? ''} ${w.message}`)
  const onUncaught = (e) => seen.push(`uncaught: ${describe(e)}`)
  process.on('warning', onWarning)
  process.on('uncaughtException', onUncaught)
  t.after(() => {
    process.off('warning', onWarning)
    process.off('uncaughtException', onUncaught)
  })
  return seen
}

for (const [name, make] of [
  ['a Symbol', () => Symbol('thrown by the callback')],
  ['an object whose message getter throws', throwingGetters],
  ['a revoked Proxy', revokedProxy],
]) {
  test(`a callback that throws ${name} fails the job with exactly that as cause`, async (t) => {
    const seen = watchProcess(t)
    const thrown = make()
    let calls = 0
    const { reason: error } = await rejectionOf({
      command: 'sh',
      args: ['-c', 'echo first; sleep 30'],
      onStdout: () => {
        calls++
        throw thrown
      },
    })
    assert.ok(error instanceof Error)
    assert.equal(error.code, 'ERR_CALLBACK_FAILED')
    assert.ok('cause' in error, 'the error has a cause')
    assert.equal(error.cause, thrown)
    assert.match(error.message, /^onStdout callback threw: a non-Error value$/)
    assert.equal(error.stdout, 'first\n')
    assert.equal(calls, 1)
    await stillWorks()
    await new Promise((resolve) => setImmediate(resolve))
    assert.deepEqual(seen, [])
  })
}

test('an onStderr callback that throws a Symbol, then one that throws undefined', async (t) => {
  const seen = watchProcess(t)
  for (const thrown of [Symbol('stderr'), undefined]) {
    const { reason: error } = await rejectionOf({
      command: 'sh',
      args: ['-c', 'echo out; echo err >&2'],
      onStdout: () => {},
      onStderr: () => { throw thrown },
    })
    assert.equal(error.code, 'ERR_CALLBACK_FAILED')
    assert.ok('cause' in error, 'the error has a cause')
    assert.equal(error.cause, thrown)
    assert.match(error.message, /^onStderr callback threw: a non-Error value$/)
  }
  await stillWorks()
  assert.deepEqual(seen, [])
})

/** Abort reasons of every kind; the Symbol comes first. */
const REASONS = [
  ['a Symbol', () => Symbol('why')],
  ['a revoked Proxy', revokedProxy],
  ['an object with throwing getters', throwingGetters],
  ['a number', () => 42],
]

test('abort(Symbol()) (or any other reason) while the job runs: AbortError whose cause is that very reason', async (t) => {
  const seen = watchProcess(t)
  for (const [name, make] of REASONS) {
    const reason = make()
    const controller = new AbortController()
    setTimeout(() => controller.abort(reason), 100)
    const started = performance.now()
    const { reason: error } = await rejectionOf({ command: 'sleep', args: ['30'], signal: controller.signal })
    assert.ok(performance.now() - started < BOUND_MS)
    assert.equal(error.code, 'ABORT_ERR', name)
    assert.equal(error.name, 'AbortError')
    assert.equal(error.aborted, true)
    assert.equal(error.cause, reason, name)
    assert.equal(error.cause, controller.signal.reason)
  }
  await stillWorks()
  assert.deepEqual(seen, [])
})

test('abort(Symbol()) (or any other reason) before the start: rejects, never throws, with that reason as cause', async (t) => {
  const seen = watchProcess(t)
  for (const [name, make] of REASONS) {
    const reason = make()
    const controller = new AbortController()
    controller.abort(reason)
    const { reason: error } = await rejectionOf({ command: 'true', signal: controller.signal })
    assert.equal(error.code, 'ABORT_ERR', name)
    assert.equal(error.name, 'AbortError')
    assert.equal(error.cause, reason, name)
    assert.equal(error.cause, controller.signal.reason)
  }
  await stillWorks()
  assert.deepEqual(seen, [])
})

for (const [name, values] of [
  ['a Symbol', [() => Symbol('getter')]],
  ['42 (or another primitive)', [() => 42, () => null, () => 'plain string', () => 10n, () => false]],
  ['undefined', [() => undefined]],
  ['a revoked Proxy (or an object with throwing getters)', [revokedProxy, throwingGetters]],
]) {
  test(`a getter of the job that throws ${name} rejects with exactly that value`, async (t) => {
    const seen = watchProcess(t)
    for (const make of values) {
      const thrown = make()
      const { reason: rejected } = await rejectionOf({ get command() { throw thrown } })
      assert.equal(rejected, thrown)
      // Fields read later, a proxied job and a proxied field too.
      assert.equal((await rejectionOf({ command: 'true', get signal() { throw thrown } })).reason, thrown)
      assert.equal((await rejectionOf({ command: 'true', env: { get X() { throw thrown } } })).reason, thrown)
      const env = new Proxy({}, { ownKeys() { throw thrown } })
      assert.equal((await rejectionOf({ command: 'true', env })).reason, thrown)
    }
    await stillWorks()
    assert.deepEqual(seen, [])
  })
}

test('a signal whose getters or methods throw a Symbol rejects with that Symbol', async () => {
  const thrown = Symbol('signal')
  const throwing = (field) => {
    const signal = { aborted: false, addEventListener() {}, removeEventListener() {} }
    Object.defineProperty(signal, field, { get() { throw thrown } })
    return signal
  }
  for (const field of ['aborted', 'addEventListener', 'removeEventListener']) {
    assert.equal((await rejectionOf({ command: 'true', signal: throwing(field) })).reason, thrown, field)
  }
  const early = { aborted: true, get reason() { throw thrown }, addEventListener() {}, removeEventListener() {} }
  assert.equal((await rejectionOf({ command: 'true', signal: early })).reason, thrown, 'reason')
  const adding = { aborted: false, addEventListener() { throw thrown }, removeEventListener() {} }
  assert.equal((await rejectionOf({ command: 'true', signal: adding })).reason, thrown, 'addEventListener()')
  await stillWorks()
})

for (const [name, make] of [
  ['a Symbol', () => Symbol('options')],
  ['42', () => 42],
  ['undefined', () => undefined],
  ['a revoked Proxy', revokedProxy],
]) {
  test(`the constructor throws exactly ${name} when a getter of its options throws it`, async () => {
    const thrown = make()
    let caught = Symbol('nothing thrown')
    try {
      new LocalWorkerAdapter({ get maxBuffer() { throw thrown } })
    } catch (error) {
      caught = error
    }
    assert.equal(caught, thrown)
    // A malformed option is still a RangeError naming the field, and a good one still works.
    assert.throws(() => new LocalWorkerAdapter({ maxBuffer: -1 }), (e) => e instanceof RangeError && e.field === 'options.maxBuffer')
    await stillWorks(new LocalWorkerAdapter({ maxBuffer: 1024 }))
  })
}

test('when building the rejection throws (a cause setter on Error.prototype), the promise still settles, saying so', async (t) => {
  const seen = watchProcess(t)
  const thrown = Symbol('setter')
  const original = Object.getOwnPropertyDescriptor(Error.prototype, 'cause')
  const restore = () => {
    if (original === undefined) delete Error.prototype.cause
    else Object.defineProperty(Error.prototype, 'cause', original)
  }
  t.after(restore)
  Object.defineProperty(Error.prototype, 'cause', { set() { throw thrown }, configurable: true })
  const running = new AbortController()
  setTimeout(() => running.abort('late'), 100)
  const early = new AbortController()
  early.abort('early')
  let outcomes
  try {
    outcomes = await Promise.all([
      rejectionOf({ command: 'sleep', args: ['30'], signal: running.signal }),
      rejectionOf({ command: 'true', signal: early.signal }),
      rejectionOf({ command: 'echo', onStdout: () => { throw 'x' } }),
    ])
  } finally {
    restore()
  }
  for (const { reason: error } of outcomes) {
    assert.ok(error instanceof Error)
    assert.equal(error.code, 'ERR_LOCAL_WORKER_OUTCOME')
    assert.match(error.message, /outcome could not be built: JS threw/)
    assert.equal(error.cause, thrown)
  }
  await stillWorks()
  assert.deepEqual(seen, [])
})
