// One measurement: `node bench/scenario.mjs <adapter> <scenario>`.
//
// Run by bench/run.mjs in a fresh Node process per (adapter, scenario, round),
// so that peak RSS is this measurement's own and no adapter inherits another's
// warm caches, heap growth or leftover threads.
//
// Prints exactly one JSON line on stdout: { ms, maxRssKb, runMaxRssKb, ok, detail, gapMs }.
// Exit status 0 when the JSON says ok, 1 otherwise.
//
// gapMs is the event loop's longest gap while run() ran: the longest time between two ticks
// of a 5 ms interval (or between the last tick and the end), so at least 5 ms. It is how long
// the loop could not run anything else (timers, I/O, other jobs' callbacks).

import { spawnSync } from 'node:child_process';
import { FLOOR, FLOOR_PROGRAM, createAdapter } from './adapters.mjs';
import { SCENARIOS, TRUE, describe } from './scenarios.mjs';

const [adapterName, scenarioName] = process.argv.slice(2);
const TICK_MS = 5;

function report(line) {
  // stdout is a pipe, which Node writes synchronously on Linux; the callback
  // still guards the exit, since an adapter may hold handles (threads, timers)
  // that would otherwise keep this process alive.
  process.stdout.write(JSON.stringify(line) + '\n', () => process.exit(line.ok ? 0 : 1));
}

/**
 * The floor of a serial scenario: its jobs run by spawn_floor, beside whatever the scenario
 * sets up (the busy process); the time is the program's own loop, without its start.
 */
async function measureFloor(scenario) {
  if (!scenario.serial) throw new Error(`scenario "${scenarioName}" has no floor (not serial)`);
  await scenario.setup?.();
  const run = spawnSync(FLOOR_PROGRAM, [String(scenario.jobs), TRUE], { encoding: 'utf8' });
  await scenario.teardown?.();
  if (run.status !== 0) throw new Error(`${FLOOR_PROGRAM} failed (${run.error?.message ?? run.status}): ${run.stderr}`);
  const { ms, jobs } = JSON.parse(run.stdout);
  report({ ms, maxRssKb: null, runMaxRssKb: null, ok: jobs === scenario.jobs, detail: `${jobs} jobs`, gapMs: null });
}

async function measureAdapter(scenario) {
  const adapter = await createAdapter(adapterName);

  // Untimed: scenario preparation, then one small job so that lazy
  // initialisation (module loading, thread pools, runtime start-up) is excluded.
  await scenario.setup?.();
  const warm = await adapter.execute({ command: TRUE });
  if (warm?.exitCode !== 0) throw new Error(`warm-up job failed: ${describe(warm)}`);

  let last = performance.now();
  let gapMs = 0;
  const ticker = setInterval(() => {
    const now = performance.now();
    gapMs = Math.max(gapMs, now - last);
    last = now;
  }, TICK_MS);
  const start = performance.now();
  const outcome = await scenario.run(adapter);
  const end = performance.now();
  const ms = end - start;
  // A block right before completion has no tick after it: count the tail too.
  gapMs = Math.max(gapMs, end - last);
  clearInterval(ticker);
  await scenario.teardown?.();

  // Peak RSS of this process only (RUSAGE_SELF, kB; children are not counted),
  // read twice: right after the run, and at the end. The check reads the
  // output's content like any real consumer would, and for a string built with
  // `+=` that first flattens the rope into a second full-size copy: "run" is
  // what the adapter itself needed, "end" includes that cost of using the result.
  const runMaxRssKb = process.resourceUsage().maxRSS;
  const verdict = scenario.check(outcome, adapterName);
  const maxRssKb = process.resourceUsage().maxRSS;
  report({
    ms,
    maxRssKb,
    runMaxRssKb,
    ok: verdict.ok,
    detail: verdict.detail,
    gapMs,
  });
}

try {
  const scenario = SCENARIOS[scenarioName];
  if (!scenario) throw new Error(`unknown scenario "${scenarioName}"`);
  await (adapterName === FLOOR ? measureFloor(scenario) : measureAdapter(scenario));
} catch (error) {
  report({
    ms: null,
    maxRssKb: process.resourceUsage().maxRSS,
    ok: false,
    detail: `threw: ${error?.stack ?? error}`,
  });
}
