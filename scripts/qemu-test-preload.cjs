'use strict'
// Preloaded (`node --require`) into each test process that scripts/test-arm64.sh runs with the
// aarch64 Node under qemu-user. It does two things, both driven by that script:
//
// 1. Skips the tests it names, with the reason shown by node:test (`# under qemu-user (...): ...`):
//    LOCAL_WORKER_QEMU_SKIP is a JSON object {test name: reason}; LOCAL_WORKER_QEMU_SKIP_FILE,
//    when set, is a reason to skip every test of this file. node:test's `test` is wrapped (the
//    named export that `import { test } from 'node:test'` reads) before the test file loads.
// 2. Records at exit, as one JSON line appended to LOCAL_WORKER_QEMU_REPORT, what this process
//    really was: its architecture, which implementation `index.js` chose, which `.node` files
//    were loaded, and which listed tests it skipped, so the script can check that the arm64
//    binary is what got tested and that no skip-list entry is stale.
const fs = require('node:fs')
const path = require('node:path')
const nodeTest = require('node:test')
const { syncBuiltinESMExports } = require('node:module')

const skips = JSON.parse(process.env.LOCAL_WORKER_QEMU_SKIP || '{}')
const fileReason = process.env.LOCAL_WORKER_QEMU_SKIP_FILE || ''
const report = process.env.LOCAL_WORKER_QEMU_REPORT
const skipped = []

// Only where this file has something to skip: node:test reports the location of a test as the
// caller of `test()`, which becomes this wrapper. (A listed name must appear literally in its file.)
const main = process.argv[1] ? fs.readFileSync(process.argv[1], 'utf8') : ''
if (fileReason || Object.keys(skips).some((name) => main.includes(name))) {
  const original = nodeTest.test
  const test = function test(name, options, fn) {
    const reason = typeof name === 'string' && Object.hasOwn(skips, name) ? skips[name] : fileReason
    if (!reason) return original.apply(this, arguments)
    if (typeof name === 'string') skipped.push(name)
    if (typeof options === 'function') {
      fn = options
      options = undefined
    }
    return original.call(this, name, { ...options, skip: `under qemu-user (scripts/test-arm64.sh): ${reason}` }, fn)
  }
  Object.assign(test, original) // test.skip, test.todo, test.only, ...
  nodeTest.test = test
  syncBuiltinESMExports()
}

if (report) {
  process.on('exit', () => {
    const entry = require.resolve(path.join(__dirname, '..', 'index.js'))
    const loaded = require.cache[entry]
    fs.appendFileSync(
      report,
      `${JSON.stringify({
        pid: process.pid,
        file: process.argv[1] ? path.relative(path.join(__dirname, '..'), process.argv[1]) : null,
        arch: process.arch,
        implementation: loaded ? loaded.exports.implementation : null,
        binaries: Object.keys(require.cache).filter((name) => name.endsWith('.node')),
        skipped,
      })}\n`,
    )
  })
}
