'use strict'
// One view of /proc shared by every group being waited for (Linux): which process groups still
// have a live (non-zombie) member.
//
// Members of a group other than its leader give no exit event, so termination polls. Reading
// /proc costs one file read per process of the machine, on the event loop; done once per group
// per poll, terminating 1,000 groups at once cost 1,000 full scans per round. Here a scan serves
// every waiter whose request it postdates, and scans begin at most once per interval: a few
// milliseconds, longer when a scan itself is slow (so scanning takes at most half the loop).
// Zombies do not count: an init that never reaps orphans would otherwise keep a group alive.

const { readdirSync, readFileSync } = require('node:fs')

/** Shortest time between the starts of two scans (ms). */
const MIN_INTERVAL = 5
/** Scanning may take at most 1/BUSY_SHARE of the time. */
const BUSY_SHARE = 2

const now = () => performance.now()
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** The latest snapshot: `{ started, live: Set<pgid> | null }` (null: /proc unreadable). */
let latest = null
let nextAllowed = 0
let scans = 0

/** Scans /proc now, synchronously. */
function scan() {
  const started = now()
  scans++
  let names
  try {
    names = readdirSync('/proc')
  } catch {
    return { started, live: null }
  }
  const live = new Set()
  for (const name of names) {
    const code = name.charCodeAt(0)
    if (code < 48 || code > 57) continue
    let stat
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'latin1')
    } catch {
      continue // It ended while we looked.
    }
    const state = parseStat(stat)
    if (state && state.state !== 'Z' && state.state !== 'X') live.add(state.pgrp)
  }
  return { started, live }
}

/** State letter and process group from `/proc/<pid>/stat`: the fields start after the last ')'. */
function parseStat(stat) {
  const close = stat.lastIndexOf(')')
  if (close < 0) return null
  const fields = stat.slice(close + 2).split(' ', 3)
  const pgrp = Number(fields[2])
  if (fields.length < 3 || !Number.isInteger(pgrp)) return null
  return { state: fields[0], pgrp }
}

/**
 * Resolves to a snapshot from a scan that began at or after `since` (a `performance.now()`
 * time), shared with every caller that asks meanwhile.
 */
async function snapshotSince(since) {
  for (;;) {
    if (latest && latest.started >= since) return latest
    const wait = nextAllowed - now()
    if (wait > 0) {
      await sleep(wait)
      continue // Another waiter may have scanned meanwhile.
    }
    latest = scan()
    const took = now() - latest.started
    nextAllowed = latest.started + Math.max(MIN_INTERVAL, took * BUSY_SHARE)
  }
}

/** Whether the snapshot saw a live member of group `pgid` (true when /proc was unreadable). */
function hasLiveMember(snapshot, pgid) {
  return snapshot.live === null || snapshot.live.has(pgid)
}

/** How many scans this process has made. */
const scansSoFar = () => scans

module.exports = { scan, parseStat, snapshotSince, hasLiveMember, scansSoFar }
