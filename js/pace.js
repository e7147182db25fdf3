'use strict'
// Spreading spawns over event-loop turns.
//
// child_process spawns synchronously, and on Linux libuv forks: each spawn blocks the event
// loop for about a millisecond, more as the heap grows. Hundreds of jobs started at once would
// hold the loop for that long in one go. So spawning takes at most BUDGET_MS of each turn of the
// loop; jobs beyond that wait (in order) for the next turn, after timers and I/O have run.

/** Most milliseconds spent spawning per turn of the event loop. */
const BUDGET_MS = 10

const queue = []
let spent = 0
let turnScheduled = false

/** Calls `start` now if this turn's budget allows, else in a later turn (in order). */
function schedule(start) {
  if (queue.length === 0 && spent < BUDGET_MS) run(start)
  else {
    queue.push(start)
    scheduleTurn()
  }
}

function run(start) {
  const began = performance.now()
  try {
    start()
  } finally {
    spent += performance.now() - began
    scheduleTurn()
  }
}

/** The budget is renewed in the check phase, once timers and I/O of this turn have run. */
function scheduleTurn() {
  if (turnScheduled) return
  turnScheduled = true
  setImmediate(turn)
}

function turn() {
  turnScheduled = false
  spent = 0
  while (queue.length > 0 && spent < BUDGET_MS) run(queue.shift())
}

module.exports = { schedule }
