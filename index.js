'use strict'
// Entry point of @helios-project/local-worker: picks the implementation once, at load.
//
// - native: the Rust addon, loaded by the napi-generated `binding.js`, from
//   `local-worker.<platform>.node` beside this file (a source build) or from the platform
//   package `@helios-project/local-worker-<platform>` (an install from the registry).
// - js: the JavaScript implementation in `js/` (same contract on child_process), used where no
//   binary for this platform is installed, or when LOCAL_WORKER_IMPLEMENTATION=js.
//
// A binary that is installed but fails to load is an error naming the platform, the file and
// the reason: never a silent fallback (a broken install must not quietly lose the guarantees
// only the native implementation gives).

const { existsSync, readFileSync } = require('node:fs')
const { dirname, join } = require('node:path')

const PACKAGE = '@helios-project/local-worker'
const BINARY = 'local-worker'
/** Platforms a binary is built for (package.json `napi.targets`). */
const NATIVE_PLATFORMS = ['linux-x64-gnu', 'linux-arm64-gnu', 'linux-x64-musl', 'linux-arm64-musl']

function isMusl() {
  try {
    return readFileSync('/usr/bin/ldd', 'utf8').includes('musl')
  } catch {
    // No ldd (distroless, some Alpine images): ask Node which libc it runs on.
  }
  const header = process.report?.getReport?.()?.header
  return !header?.glibcVersionRuntime
}

/** `linux-x64-gnu`, `darwin-arm64`, ...: the suffix napi gives binaries and platform packages. */
function platformName() {
  if (process.platform !== 'linux') return `${process.platform}-${process.arch}`
  return `linux-${process.arch}-${isMusl() ? 'musl' : 'gnu'}`
}

/** The binary that `binding.js` would load for `platform`, or null when none is installed. */
function installedBinary(platform) {
  const local = join(__dirname, `${BINARY}.${platform}.node`)
  if (existsSync(local)) return local
  let manifest
  try {
    manifest = require.resolve(`${PACKAGE}-${platform}/package.json`)
  } catch {
    return null
  }
  const { main } = JSON.parse(readFileSync(manifest, 'utf8'))
  return join(dirname(manifest), main || `${BINARY}.${platform}.node`)
}

/** What made `binding.js` fail, without its "npm has a bug" preamble. */
function loadFailureReason(error) {
  const reasons = []
  for (let e = error?.cause; e; e = e.cause) {
    if (typeof e.message === 'string' && !e.message.startsWith('Cannot find module')) reasons.unshift(e.message)
  }
  return reasons.length > 0 ? reasons.join('; ') : String(error?.message ?? error)
}

function loadNative(platform, binary) {
  try {
    return require('./binding.js')
  } catch (error) {
    const where = binary ?? `${BINARY}.${platform}.node (not installed)`
    const wrapped = new Error(
      `${PACKAGE}: the native binary for ${platform} failed to load: ${where}: ${loadFailureReason(error)}. ` +
        `Reinstall the package, or set LOCAL_WORKER_IMPLEMENTATION=js to use the JavaScript implementation.`,
    )
    wrapped.code = 'ERR_LOCAL_WORKER_NATIVE_LOAD'
    wrapped.platform = platform
    wrapped.path = binary
    wrapped.cause = error
    throw wrapped
  }
}

function choose() {
  const requested = process.env.LOCAL_WORKER_IMPLEMENTATION
  if (requested !== undefined && requested !== '' && requested !== 'native' && requested !== 'js') {
    const error = new Error(
      `${PACKAGE}: LOCAL_WORKER_IMPLEMENTATION must be 'native' or 'js' (or unset), got ${JSON.stringify(requested)}`,
    )
    error.code = 'ERR_LOCAL_WORKER_IMPLEMENTATION'
    throw error
  }
  if (requested === 'js') return { implementation: 'js', binding: require('./js/index.js') }
  const platform = platformName()
  const binary = installedBinary(platform)
  if (binary !== null || requested === 'native') {
    return { implementation: 'native', binding: loadNative(platform, binary) }
  }
  if (NATIVE_PLATFORMS.includes(platform)) {
    process.emitWarning(
      `no native binary is installed for ${platform} (the optional dependency ${PACKAGE}-${platform} is missing); ` +
        'jobs run on the JavaScript implementation, without resourceUsage, posix_spawn or a supervisor per job.',
      { code: 'LOCAL_WORKER_JS_FALLBACK' },
    )
  }
  return { implementation: 'js', binding: require('./js/index.js') }
}

const chosen = choose()

/** Which implementation runs the jobs: `'native'` (the Rust addon) or `'js'` (child_process). */
module.exports.implementation = chosen.implementation
module.exports.LocalWorkerAdapter = chosen.binding.LocalWorkerAdapter
