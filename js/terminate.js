'use strict'
// Ending a job's process group: SIGTERM, a grace period, then SIGKILL, until nothing of it lives.
//
// Jobs are spawned with `detached: true`, so on POSIX the leader starts a session and a process
// group of its own (pgid = its pid) that its descendants inherit; `process.kill(-pgid, sig)`
// signals all of them. Members other than the leader give no exit event, so we poll: on Linux
// /proc (one scan shared by all waiting groups: proc-scan.js) tells which processes of the group still run (zombies do not count: an init that never
// reaps orphans would otherwise keep a group "alive" forever); elsewhere `kill(-pgid, 0)` tells
// whether the group has any member at all.
//
// Windows has no process groups to signal: `taskkill /T /F` kills the leader's tree, best
// effort (a process whose parent already exited is no longer in the tree).

const { spawn, spawnSync } = require('node:child_process')
const { scan, snapshotSince, hasLiveMember } = require('./proc-scan.js')

const isWindows = process.platform === 'win32'
const isLinux = process.platform === 'linux'

/** After SIGKILL, how long to wait for the kernel to finish the processes before giving up. */
const KILL_WAIT_BOUND = 2000
const MAX_POLL = 50

const now = () => performance.now()
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Sends `signal` to every process of group `pgid`: true if sent, false if the group is empty, null on another error. */
function signalGroup(pgid, signal) {
  try {
    process.kill(-pgid, signal)
    return true
  } catch (error) {
    return error?.code === 'ESRCH' ? false : null
  }
}

/** Whether any process is in the group, zombies included. */
function groupExists(pgid) {
  if (isWindows) return false
  return signalGroup(pgid, 0) !== false
}

/** Whether a process of the group is still running (zombies do not count on Linux). Scans /proc now. */
function hasLiveMembers(pgid) {
  if (!groupExists(pgid)) return false
  if (!isLinux) return true
  return hasLiveMember(scan(), pgid)
}

/**
 * Sends SIGTERM to the group, then SIGKILL to whatever still runs after `grace` ms. Resolves
 * once `leader` (if given: `{ exited(untilMs) }`) has exited and no live member is left, or
 * after the bound that follows SIGKILL. Resolves to whether SIGKILL was needed.
 */
async function terminateGroup(pgid, grace, leader) {
  if (isWindows) return terminateTree(pgid, leader)
  if (signalGroup(pgid, 'SIGTERM') !== true) return false
  if (await waitUntilGone(pgid, leader, now() + grace)) return false
  signalGroup(pgid, 'SIGKILL')
  await waitUntilGone(pgid, leader, now() + KILL_WAIT_BOUND)
  return true
}

async function waitUntilGone(pgid, leader, until) {
  if (leader && !(await leader.exited(until - now()))) return false
  // Members other than the leader give no exit event: poll, quickly at first. Each round needs
  // a view of /proc newer than the last one seen (the first: newer than now), shared with every
  // other group being waited for.
  let since = now()
  let pause = 1
  for (;;) {
    // The cheap check first: no process at all in the group, not even a zombie.
    if (!groupExists(pgid)) return true
    if (isLinux) {
      const snapshot = await snapshotSince(since)
      if (!hasLiveMember(snapshot, pgid)) return true
      since = snapshot.started + 1e-6
    }
    const left = until - now()
    if (left <= 0) return false
    await sleep(Math.min(pause, left))
    pause = Math.min(pause * 2, MAX_POLL)
  }
}

/** Windows: `taskkill /T /F` on the leader's tree, then wait for the leader. */
async function terminateTree(pid, leader) {
  if (!leader) return false
  await new Promise((resolve) => {
    const killer = spawn('taskkill', ['/pid', String(pid), '/T', '/F'], { stdio: 'ignore', windowsHide: true })
    killer.on('error', resolve)
    killer.on('exit', resolve)
  })
  await leader.exited(KILL_WAIT_BOUND)
  return true
}

/** SIGKILL the group at once, synchronously (for Node's exit). Never throws. */
function killGroupNow(pgid) {
  if (isWindows) {
    try {
      spawnSync('taskkill', ['/pid', String(pgid), '/T', '/F'], { stdio: 'ignore', windowsHide: true })
    } catch {
      // Best effort.
    }
    return
  }
  signalGroup(pgid, 'SIGKILL')
}

module.exports = { terminateGroup, groupExists, hasLiveMembers, killGroupNow, isWindows }
