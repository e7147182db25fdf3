'use strict'
// Starting the job's leader with child_process: a process group of its own, stdin /dev/null,
// piped output. Spawn failures become the same errors as the native implementation's
// (core/src/spawn.rs): `spawn <command> <CODE>: <explanation>`, naming the command, or the
// working directory, which is checked here before spawning (child_process cannot tell a
// missing cwd from a missing command: both are ENOENT).

const { spawn } = require('node:child_process')
const { accessSync, constants: fsConstants, statSync } = require('node:fs')
const path = require('node:path')

const { errnoOf, spawnError, systemError } = require('./errors.js')

const isWindows = process.platform === 'win32'
/** Used when neither the job nor the parent has a `PATH` (glibc's execvp default). */
const DEFAULT_PATH = '/bin:/usr/bin'

/**
 * Spawns the leader of `spec`. Returns `{ child }`, or `{ error }` (the Error to reject with)
 * when it cannot start. A child whose `pid` is undefined failed to start: its 'error' event
 * tells why (`failure(spec, error)` turns that into the Error to reject with).
 */
function spawnLeader(spec) {
  const cwdError = spec.cwd === undefined ? null : checkCwd(spec)
  if (cwdError !== null) return { error: cwdError }
  try {
    const child = spawn(spec.command, spec.args, {
      cwd: spec.cwd,
      env: spec.environment,
      stdio: ['ignore', 'pipe', 'pipe'],
      // POSIX: setsid(), so the leader heads a process group (and session) of its own that
      // its descendants inherit. Windows has no groups to signal (see terminate.js).
      detached: !isWindows,
      windowsHide: true,
    })
    return { child }
  } catch (error) {
    return { error: failure(spec, error) }
  }
}

function checkCwd(spec) {
  const shown = spec.cwd
  let stats
  try {
    stats = statSync(shown)
  } catch (error) {
    const code = typeof error?.code === 'string' ? error.code : 'ENOENT'
    const errno = typeof error?.errno === 'number' ? error.errno : errnoOf(code)
    const what = code === 'ENOENT'
      ? `working directory does not exist: ${shown}`
      : `working directory is not usable: ${shown} (${describeErrno(errno, code)})`
    return spawnError(code, errno, spec.command, shown, what, spec.args)
  }
  if (stats.isDirectory()) return null
  return spawnError('ENOTDIR', errnoOf('ENOTDIR'), spec.command, shown,
    `working directory is not a directory: ${shown}`, spec.args)
}

/** `Not a directory (os error 20)`, as Rust's io::Error prints it. */
function describeErrno(errno, code) {
  const description = systemError(errno)?.[1] ?? code
  const text = description.charAt(0).toUpperCase() + description.slice(1)
  return typeof errno === 'number' && !isWindows ? `${text} (os error ${-errno})` : text
}

/** Errors of looking the program up (the native implementation finds them before spawning). */
const LOOKUP_CODES = new Set(['ELOOP', 'ENAMETOOLONG', 'ENOTDIR'])

/** The Error to reject with for child_process's spawn error `error` (thrown or emitted). */
function failure(spec, error) {
  const { command, args } = spec
  const code = typeof error?.code === 'string' ? error.code : 'EIO'
  const errno = typeof error?.errno === 'number' ? error.errno : errnoOf(code)
  let what
  if (code === 'ENOENT' && !resolvable(spec)) what = `command not found: ${command}`
  else if (code === 'EACCES') what = `permission denied: ${command} is not executable`
  else if (LOOKUP_CODES.has(code)) what = `cannot execute ${command}`
  // The program was found but exec failed (a missing interpreter, E2BIG, ...).
  else what = describeErrno(errno, code)
  return spawnError(code, errno, command, command, what, args)
}

/**
 * Whether `command` names an executable file, looked up as execvp would (the job's PATH, or
 * the inherited one; relative to cwd). Only asked after a failure, to explain an ENOENT.
 */
function resolvable(spec) {
  if (isWindows) return false
  const { command, cwd } = spec
  const within = (file) => (cwd === undefined ? file : path.resolve(cwd, file))
  if (command.includes('/')) return executable(within(command))
  const searchPath = spec.environment.PATH ?? DEFAULT_PATH
  return searchPath.split(':').some((dir) => executable(within(path.join(dir || '.', command))))
}

function executable(file) {
  try {
    if (statSync(file).isDirectory()) return false
    accessSync(file, fsConstants.X_OK)
    return true
  } catch {
    return false
  }
}

module.exports = { spawnLeader, failure }
