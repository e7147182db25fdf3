// Benchmark of @helios-project/local-worker against the two ways Helios could
// run processes without it: plain child_process (what the TypeScript
// infrastructure package does today) and execa 9.
//
//   npm run bench                              # all scenarios, all adapters, 5 rounds
//   node bench/run.mjs --rounds 3
//   node bench/run.mjs --only spawn-serial,capture-256m
//   node bench/run.mjs --adapters child_process,execa   # without the addon
//
// Method (the why of each choice):
// - Every (round, scenario, adapter) measurement is a fresh `node
//   bench/scenario.mjs <adapter> <scenario>` process: peak RSS (maxRSS is a
//   high-water mark, it never goes down) is then that measurement's alone, and
//   no adapter benefits from caches or heap another one warmed up.
// - Inside that process one small untimed job runs first, so one-off start-up
//   (module loading, thread pools) is excluded from the time.
// - Adapters alternate within each round, and the order rotates from round to
//   round, so slow drift of a shared, noisy machine spreads over all of them.
// - Tables show medians, which shrug off the odd outlier of a noisy machine.
// - Peak RSS is read at the end of the measurement process (what the goals
//   use), after the correctness check has read the output; "run only" is the
//   peak right after the timed part. They differ for `+=`-built strings: those
//   are V8 ropes, which the first read of their content flattens into a second
//   full-size copy (see bench/scenario.mjs).
// - Correctness is checked in every run; any failed check makes the exit
//   status non-zero. Goals that are not met do not: this is a measurement,
//   not a test.
//
// A default run (5 rounds) takes about 5-6 minutes on a 2-core VM, most of it in
// spawn-heap-2g (filling 2 GiB, then ~13 s of forking for each Node-based adapter).

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ADAPTER_NAMES, FLOOR, FLOOR_PROGRAM, GROUPED, ROOT } from './adapters.mjs';
import { SCENARIOS, SCENARIO_NAMES } from './scenarios.mjs';

const SCENARIO_SCRIPT = fileURLToPath(new URL('./scenario.mjs', import.meta.url));
const BASELINE = 'child_process'; // the goals are stated against what ours replaces

// Goals from the issue tracker, evaluated on medians. `value` picks the measured
// number from the medians of ours (o), child_process (c) and execa (e).
const timeGoal = (scenario, max) => ({ scenario, what: `time ours/child_process ≤ ${max}`, value: (o, c) => o.ms / c.ms, met: (v) => v <= max, fmt: ratio });
const rssGoal = (scenario) => ({
  scenario,
  what: 'peak RSS ours/child_process ≤ 1.0',
  value: (o, c) => o.rssKb / c.rssKb,
  met: (v) => v <= 1.0,
  fmt: (v, o, c) => `${ratio(v)} (run only ${ratio(o.runRssKb / c.runRssKb)})`,
});
const CAPTURES = ['capture-16m', 'capture-256m', 'capture-16m-utf8', 'capture-256m-utf8', 'capture-16m-random', 'capture-256m-random'];
const GOALS = [
  { scenario: 'spawn-heap-2g', what: 'time ours/child_process ≤ 0.05 (≥ 20× faster)', value: (o, c) => o.ms / c.ms, met: (v) => v <= 0.05, fmt: ratio },
  timeGoal('spawn-serial', 0.6),
  timeGoal('spawn-serial-busy', 0.6),
  timeGoal('spawn-16', 0.6),
  ...CAPTURES.flatMap((scenario) => [timeGoal(scenario, 0.5), rssGoal(scenario)]),
  timeGoal('stream-128m', 0.8),
  timeGoal('stream-128m-utf8', 0.8),
  timeGoal('stream-128m-random', 0.8),
];
/** Every scenario: the loop's longest gap is at most max(2 × child_process's, 50 ms). */
const GAP_FLOOR_MS = 50;
function gapBound(c) {
  return Math.max(c && c.ok > 0 && c.gapMs != null ? 2 * c.gapMs : 0, GAP_FLOOR_MS);
}

// ---------------------------------------------------------------- arguments

function parseArgs(argv) {
  const opts = { rounds: 5, scenarios: SCENARIO_NAMES, adapters: ADAPTER_NAMES, timeoutS: 300 };
  const list = (value, known, what) => {
    const names = String(value ?? '').split(',').map((s) => s.trim()).filter(Boolean);
    const unknown = names.filter((n) => !known.includes(n));
    if (names.length === 0 || unknown.length) usage(`unknown ${what}: ${unknown.join(', ') || '(none)'}; known: ${known.join(', ')}`);
    return names;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => argv[++i];
    if (arg === '--rounds') {
      opts.rounds = Number(value());
      if (!Number.isInteger(opts.rounds) || opts.rounds < 1) usage('--rounds wants a positive integer');
    } else if (arg === '--only') opts.scenarios = list(value(), SCENARIO_NAMES, 'scenario');
    else if (arg === '--adapters') opts.adapters = list(value(), [...ADAPTER_NAMES, GROUPED], 'adapter');
    else if (arg === '--timeout') {
      opts.timeoutS = Number(value());
      if (!(opts.timeoutS > 0)) usage('--timeout wants seconds > 0');
    } else if (arg === '--help' || arg === '-h') usage();
    else usage(`unknown argument ${arg}`);
  }
  return opts;
}

function usage(error) {
  const text = `usage: node bench/run.mjs [--rounds N] [--only s1,s2] [--adapters a1,a2] [--timeout SECONDS]
  scenarios: ${SCENARIO_NAMES.join(', ')}
  adapters:  ${ADAPTER_NAMES.join(', ')}
  --timeout: per measurement process (default 300 s)`;
  if (error) {
    console.error(`error: ${error}\n${text}`);
    process.exit(2);
  }
  console.log(text);
  process.exit(0);
}

// ---------------------------------------------------------------- measuring

/** Runs one measurement in a fresh Node process; resolves to its JSON line (never rejects). */
function measure(adapter, scenario, timeoutS) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [SCENARIO_SCRIPT, adapter, scenario], {
      cwd: ROOT,
      env: { ...process.env, LW_BENCH_DATA: DATA_DIR },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL'); // only this measurement process, by its handle
    }, timeoutS * 1000);
    const fail = (detail) => ({ ms: null, maxRssKb: null, ok: false, detail });
    child.on('error', (error) => {
      clearTimeout(timer);
      resolve(fail(`could not start measurement process: ${error.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const tail = stderr.trim() ? ` | stderr: ${stderr.trim().split('\n').slice(-5).join(' / ')}` : '';
      if (timedOut) return resolve(fail(`timed out after ${timeoutS} s${tail}`));
      const line = stdout.trim().split('\n').pop();
      let parsed;
      try {
        parsed = JSON.parse(line);
      } catch {
        return resolve(fail(`no JSON line (exit ${code ?? signal})${tail}`));
      }
      if (parsed.ok && code !== 0) parsed = { ...parsed, ok: false, detail: `${parsed.detail}; but exit ${code ?? signal}` };
      if (!parsed.ok && tail) parsed.detail += tail;
      resolve(parsed);
    });
  });
}

// ---------------------------------------------------------------- reporting

function median(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

function ratio(v) {
  return v == null || !Number.isFinite(v) ? '-' : `${v.toFixed(v < 0.1 ? 3 : 2)}×`;
}
function millis(v) {
  return v == null ? '-' : `${v.toFixed(1)} ms`;
}
const num = (v, digits = 1) => (v == null ? '-' : v.toFixed(digits));

function table(header, rows) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  // First two columns are names (left-aligned), the rest numbers (right-aligned).
  const line = (cells) =>
    cells.map((c, i) => (i < 2 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

function machine() {
  const cpus = os.cpus();
  return [
    `cpu:    ${cpus[0]?.model ?? 'unknown'} × ${cpus.length}`,
    `memory: ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB total`,
    `node:   ${process.version} (${process.platform}/${process.arch})`,
    `kernel: ${os.release()}`,
    `load:   ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} (1/5/15 min, at start)`,
  ].join('\n');
}

// ---------------------------------------------------------------- main

const opts = parseArgs(process.argv.slice(2));
const started = Date.now();
// Input files, written by the first measurement that needs each, shared by all (bench/data.mjs).
const DATA_DIR = mkdtempSync(join(os.tmpdir(), 'lw-bench-data-'));
process.on('exit', () => rmSync(DATA_DIR, { recursive: true, force: true }));
// Written here, before any measurement: a measurement that wrote one would count its memory.
{
  const dataModule = JSON.stringify(new URL('./data.mjs', import.meta.url).href);
  const prepared = spawnSync(process.execPath, ['--input-type=module', '-e', `const d = await import(${dataModule}); d.dataFile('utf8'); d.dataFile('random');`], {
    env: { ...process.env, LW_BENCH_DATA: DATA_DIR },
    stdio: 'inherit',
  });
  if (prepared.status !== 0) {
    console.error('error: could not write the input files');
    process.exit(2);
  }
}

console.log('# local-worker benchmark\n');
console.log(machine());
console.log(
  `\nrounds: ${opts.rounds}; scenarios: ${opts.scenarios.join(', ')}; adapters: ${opts.adapters.join(', ')}` +
    '\neach measurement runs in a fresh node process, after one untimed warm-up job\n',
);

// Fail fast, with a hint, when the addon is not built: otherwise every "ours"
// measurement would fail one by one. Checked in a child so that this process
// never loads the addon.
if (opts.adapters.includes('ours')) {
  const probe = spawnSync(process.execPath, ['-e', `if (typeof require(${JSON.stringify(ROOT)}).LocalWorkerAdapter !== 'function') throw new Error('no LocalWorkerAdapter export')`], { encoding: 'utf8' });
  if (probe.status !== 0) {
    console.error(`error: cannot load the addon from ${ROOT} (run \`npm run build\` first,`);
    console.error('or bench the others only: --adapters child_process,execa):');
    console.error(probe.stderr.trim().split('\n').slice(0, 6).join('\n'));
    process.exit(2);
  }
}

// The floor program of the serial scenarios (a release build of a core example).
let floorBuilt = false;
if (opts.adapters.includes('ours') && opts.scenarios.some((s) => SCENARIOS[s].serial)) {
  const build = spawnSync('cargo', ['build', '--release', '--quiet', '-p', 'local-worker-core', '--example', 'spawn_floor'], { cwd: ROOT, stdio: 'inherit' });
  floorBuilt = build.status === 0;
  if (!floorBuilt) console.error(`warning: could not build ${FLOOR_PROGRAM}: no floor is measured`);
}

// The adapters of each scenario: the chosen ones, plus ours without supervisors where the
// scenario counts its jobs (the supervisor's cost per job is printed from the pair), plus the
// floor where its jobs run one at a time.
const adaptersOf = (scenario) => {
  const { jobs, serial } = SCENARIOS[scenario];
  const ours = opts.adapters.includes('ours');
  return [
    ...opts.adapters,
    ...(jobs && ours && !opts.adapters.includes(GROUPED) ? [GROUPED] : []),
    ...(serial && ours && floorBuilt ? [FLOOR] : []),
  ];
};
// runs[scenario][adapter] = [{ round, ms, maxRssKb, ok, detail, gapMs }]
const runs = Object.fromEntries(opts.scenarios.map((s) => [s, Object.fromEntries(adaptersOf(s).map((a) => [a, []]))]));
const failures = [];
/** Failures of a baseline where it cannot do what is asked (SCENARIOS[s].baselineMayFail). */
const expectedFailures = [];

for (let round = 1; round <= opts.rounds; round++) {
  // Rotate the adapter order each round (see the header for why).
  for (const scenario of opts.scenarios) {
    const adapters = adaptersOf(scenario);
    const shift = (round - 1) % adapters.length;
    const order = [...adapters.slice(shift), ...adapters.slice(0, shift)];
    for (const adapter of order) {
      const r = await measure(adapter, scenario, opts.timeoutS);
      runs[scenario][adapter].push({ round, ...r });
      const expected = !r.ok && adapter !== 'ours' && SCENARIOS[scenario].baselineMayFail;
      if (expected) expectedFailures.push({ round, scenario, adapter, detail: r.detail });
      else if (!r.ok) failures.push({ round, scenario, adapter, detail: r.detail });
      const gap = r.gapMs != null ? `  gap ${millis(r.gapMs)}` : '';
      console.log(
        `[round ${round}/${opts.rounds}] ${scenario.padEnd(19)} ${adapter.padEnd(13)} ` +
          `${num(r.ms).padStart(9)} ms ${num(r.maxRssKb == null ? null : r.maxRssKb / 1024).padStart(8)} MB${gap}  ` +
          (r.ok
            ? r.detail?.startsWith('CORRUPTED') ? `ok (${r.detail})` : 'ok'
            : `${expected ? 'FAILED (cannot do this, expected)' : 'FAILED'}: ${String(r.detail).slice(0, 300)}`),
      );
    }
  }
}

// Medians over the runs that passed their checks: a failed run may be fast for
// the wrong reason (e.g. output cut short), so it never counts.
const stats = {};
for (const scenario of opts.scenarios) {
  stats[scenario] = {};
  for (const adapter of adaptersOf(scenario)) {
    const good = runs[scenario][adapter].filter((r) => r.ok);
    stats[scenario][adapter] = {
      ok: good.length,
      total: runs[scenario][adapter].length,
      ms: median(good.map((r) => r.ms)),
      min: good.length ? Math.min(...good.map((r) => r.ms)) : null,
      max: good.length ? Math.max(...good.map((r) => r.ms)) : null,
      rssKb: median(good.map((r) => r.maxRssKb)),
      runRssKb: median(good.map((r) => r.runMaxRssKb)),
      gapMs: median(good.map((r) => r.gapMs)),
      corrupted: good.filter((r) => r.detail?.startsWith('CORRUPTED')).length,
    };
  }
}

console.log('\n## medians (passing runs only)\n');
console.log(
  table(
    ['scenario', 'adapter', 'ok', 'time ms', 'min–max ms', 'peak RSS MB', '(run only)', 'loop gap ms', 'corrupted'],
    opts.scenarios.flatMap((scenario) =>
      adaptersOf(scenario).map((adapter) => {
        const s = stats[scenario][adapter];
        return [
          scenario,
          adapter,
          `${s.ok}/${s.total}`,
          num(s.ms),
          s.min == null ? '-' : `${num(s.min, 0)}–${num(s.max, 0)}`,
          num(s.rssKb == null ? null : s.rssKb / 1024),
          num(s.runRssKb == null ? null : s.runRssKb / 1024),
          num(s.gapMs),
          s.corrupted ? `${s.corrupted}/${s.ok}` : '',
        ];
      }),
    ),
  ),
);

if (opts.adapters.includes('ours') && opts.adapters.length > 1) {
  const others = opts.adapters.filter((a) => a !== 'ours');
  console.log('\n## ratios of medians (< 1 means ours is faster / smaller)\n');
  console.log(
    table(
      ['scenario', 'vs', 'time', 'peak RSS', '(run only)'],
      opts.scenarios.flatMap((scenario) =>
        others.map((other) => {
          const o = stats[scenario].ours;
          const x = stats[scenario][other];
          const r = (a, b) => (a == null || b == null ? null : a / b);
          return [scenario, `ours/${other}`, ratio(r(o.ms, x.ms)), ratio(r(o.rssKb, x.rssKb)), ratio(r(o.runRssKb, x.runRssKb))];
        }),
      ),
    ),
  );
}

const costRows = opts.scenarios
  .filter((scenario) => stats[scenario][GROUPED] && stats[scenario].ours)
  .map((scenario) => {
    const { jobs } = SCENARIOS[scenario];
    const o = stats[scenario].ours;
    const g = stats[scenario][GROUPED];
    const perJob = o.ms == null || g.ms == null ? null : (o.ms - g.ms) / jobs;
    const c = stats[scenario][BASELINE];
    return [scenario, num(o.ms), num(g.ms), perJob == null ? '-' : `${perJob.toFixed(3)} ms`, c ? ratio(g.ms / c.ms) : '-'];
  });
if (costRows.length) {
  console.log('\n## the supervisor per job: ours with it vs without it (process-group containment only)\n');
  console.log(table(['scenario', 'ours ms', `${GROUPED} ms`, 'supervisor cost per job (< 0: saving)', `${GROUPED}/${BASELINE}`], costRows));
}

// Per job above the floor: what each adapter adds to posix_spawn + waitpid of the same jobs.
const floorColumns = ['ours', GROUPED, BASELINE].filter((a) => opts.adapters.includes(a) || a === GROUPED);
const floorRows = opts.scenarios
  .filter((scenario) => stats[scenario][FLOOR]?.ms != null)
  .map((scenario) => {
    const { jobs } = SCENARIOS[scenario];
    const floor = stats[scenario][FLOOR].ms;
    const above = (adapter) => {
      const ms = stats[scenario][adapter]?.ms;
      return ms == null ? '-' : `${((ms - floor) / jobs).toFixed(3)} ms (${ratio(ms / floor)})`;
    };
    return [scenario, `${(floor / jobs).toFixed(3)} ms`, ...floorColumns.map(above)];
  });
if (floorRows.length) {
  console.log('\n## serial spawning: cost per job above the floor (posix_spawn + waitpid in a loop; × floor)\n');
  console.log(table(['scenario', 'floor per job', ...floorColumns], floorRows));
}

console.log(`\n## goals (medians; baseline is ${BASELINE}, the adapter ours replaces)\n`);
const goalRows = [];
for (const goal of GOALS) {
  if (!opts.scenarios.includes(goal.scenario)) continue;
  const o = stats[goal.scenario].ours;
  const c = stats[goal.scenario][BASELINE];
  let value = '-';
  let verdict;
  if (!o) verdict = 'SKIPPED (ours not measured)';
  else if (o.ok < o.total) verdict = `NOT MET (ours failed ${o.total - o.ok}/${o.total} correctness checks)`;
  else if (!c) verdict = `SKIPPED (${BASELINE} not measured)`;
  else if (c.ok === 0) verdict = `UNKNOWN (${BASELINE} failed every run)`;
  else {
    const v = goal.value(o, c);
    value = goal.fmt(v, o, c);
    verdict = goal.met(v, o, c) ? 'MET' : 'NOT MET';
  }
  goalRows.push([goal.scenario, goal.what, value, verdict]);
}
for (const scenario of opts.scenarios) {
  const o = stats[scenario].ours;
  const c = stats[scenario][BASELINE];
  if (!o) continue;
  const bound = gapBound(c);
  let verdict;
  if (o.ok < o.total) verdict = `NOT MET (ours failed ${o.total - o.ok}/${o.total} correctness checks)`;
  else verdict = o.gapMs <= bound ? 'MET' : 'NOT MET';
  const base = c && c.ok > 0 ? millis(c.gapMs) : `${BASELINE} failed`;
  goalRows.push([scenario, `loop gap ≤ max(2 × ${BASELINE}'s, ${GAP_FLOOR_MS} ms)`, `${millis(o.gapMs)} vs ${base} (bound ${millis(bound)})`, verdict]);
}
console.log(table(['scenario', 'goal', 'measured', 'verdict'], goalRows));
if (expectedFailures.length) {
  console.log(`\n## baselines that cannot do a scenario (${expectedFailures.length}; expected, not a failure)\n`);
  for (const f of expectedFailures) console.log(`- round ${f.round}, ${f.scenario}, ${f.adapter}: ${String(f.detail).slice(0, 300)}`);
}

const minutes = ((Date.now() - started) / 60000).toFixed(1);
console.log(`\nload at the end: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} (1/5/15 min)`);
if (failures.length) {
  console.log(`\n## FAILED CHECKS (${failures.length})\n`);
  for (const f of failures) console.log(`- round ${f.round}, ${f.scenario}, ${f.adapter}: ${String(f.detail).slice(0, 500)}`);
  console.log(`\ndone in ${minutes} min, with failures`);
  process.exit(1);
}
console.log(`\ndone in ${minutes} min, all checks passed`);
