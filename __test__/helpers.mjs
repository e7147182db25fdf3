// Shared helpers for the node:test suites: real processes only.
import { spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)
export const { LocalWorkerAdapter, implementation } = require('../index.js')

/**
 * The `skip` option of a test of a feature only the native implementation has: false under
 * the native one, else `native only: <why>` (node:test prints it, so nothing is skipped silently).
 */
export function nativeOnly(why) {
  return implementation === 'js' ? `native only: ${why}` : false
}

/** Live (non-zombie) processes whose command line contains `marker`. */
export function processesWith(marker) {
  const found = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue
      const cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8')
      if (cmdline.includes(marker)) found.push(Number(name))
    } catch {
      // The process ended while we looked.
    }
  }
  return found
}

/** The command line of `pid`, or null if it is gone. */
function cmdlineOf(pid) {
  try { return readFileSync(`/proc/${pid}/cmdline`, 'latin1') } catch { return null }
}

/** The parent of `pid`, or 0 if it is gone. */
function parentOf(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1')
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
  } catch { return 0 }
}

/**
 * The processes carrying `marker`, less a shell's fork that has not exec'd yet (a loop's
 * `sleep 1`, a background `setsid`): it carries its parent's command line for a moment.
 */
export function runningWith(marker) {
  return processesWith(marker).filter((pid) => {
    // Read again: the fork may have exec'd (`sleep 1`) since processesWith looked.
    const own = cmdlineOf(pid)
    return own !== null && own.includes(marker) && cmdlineOf(parentOf(pid)) !== own
  })
}

/** Kills whatever `processesWith(marker)` finds, so a failing test leaves nothing behind. */
export function killAll(marker) {
  for (const pid of processesWith(marker)) {
    try { process.kill(pid, 'SIGKILL') } catch {}
  }
}

/** A unique marker to find a test's processes by their command line. */
export function marker(name) {
  return `lw-test-${name}-${process.pid}-${Math.random().toString(36).slice(2)}`
}

/** A shell snippet that starts a grandchild looping forever, carrying `mark` in its argv. */
export function loopingGrandchild(mark) {
  return `sh -c 'while :; do sleep 1; done' ${mark} &`
}

/** A new directory in the system's temporary one (`prefix` + random), removed when this process exits. */
export function scratchDir(prefix) {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }))
  return dir
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Resolves with the rejection reason, whatever it is (a Symbol, undefined, a revoked Proxy:
 * it is never inspected); fails if the promise resolves.
 */
export async function rejection(promise) {
  let value
  try {
    value = await promise
  } catch (error) {
    return error
  }
  throw Object.assign(new Error('expected a rejection'), { value })
}

const EXIT_FIXTURE = fileURLToPath(new URL('./fixtures/exit-with-job.mjs', import.meta.url))

/**
 * Runs fixtures/exit-with-job.mjs with `args` (mode, mark, [variant]) in a Node of its own; `act`
 * may signal it once its job has started. Resolves with how that Node ended and what it printed.
 */
export function runExitFixture(args, act = () => {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [EXIT_FIXTURE, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => {
      stdout += d
      if (stdout.includes('job-started')) act(child)
    })
    child.stderr.on('data', (d) => { stderr += d })
    child.on('error', reject)
    child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr }))
  })
}
