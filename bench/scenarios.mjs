// Workloads of the benchmark. Each scenario has:
//   jobs             (spawn scenarios) how many jobs run() starts: the bench then also
//                    measures ours without its supervisors and prints their cost per job,
//   setup()          untimed preparation (e.g. the 2 GiB parent heap),
//   run(adapter)     the timed part; returns whatever check() needs,
//   check(outcome)   correctness, run after the clock stops:
//                    { ok, detail, lagMs? }.
//
// Commands are given as absolute paths so that no adapter pays (or skips) a
// PATH search the others don't: we compare process handling, not lookup.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const TRUE = '/usr/bin/true';
export const CAT = '/usr/bin/cat';
export const HEAD = '/usr/bin/head';

const MiB = 1024 * 1024;

/** Runs `total` jobs with at most `concurrency` in flight, results in job order. */
async function pool(total, concurrency, makeJob) {
  const results = new Array(total);
  let next = 0;
  async function lane() {
    while (next < total) {
      const i = next++;
      results[i] = await makeJob(i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, lane));
  return results;
}

/** Many `true` jobs: every one must exit 0 with empty output. */
function spawnMany(total, concurrency) {
  return async (adapter) => pool(total, concurrency, () => adapter.execute({ command: TRUE }));
}

function checkSpawnMany(total) {
  return (results) => {
    const bad = results
      .map((r, i) => ({ r, i }))
      .filter(({ r }) => r?.exitCode !== 0 || r.stdout !== '' || r.stderr !== '');
    if (results.length !== total || bad.length > 0) {
      const first = bad[0];
      return {
        ok: false,
        detail: `${bad.length}/${total} jobs wrong; first #${first?.i}: ${describe(first?.r)}`,
      };
    }
    return { ok: true, detail: `${total} × true, all exit 0` };
  };
}

/** `head -c bytes /dev/zero`: output is `bytes` NUL characters. */
function headJob(bytes, extra = {}) {
  return { command: HEAD, args: ['-c', String(bytes), '/dev/zero'], ...extra };
}

/** Checks one captured result of headJob(bytes): exit 0, right length, right content at the ends. */
function checkHead(result, bytes) {
  const problems = [];
  if (result?.exitCode !== 0) problems.push(`exitCode ${result?.exitCode}`);
  const out = result?.stdout;
  if (typeof out !== 'string') {
    problems.push(`stdout is ${typeof out}`);
  } else {
    if (out.length !== bytes) problems.push(`stdout.length ${out.length} !== ${bytes}`);
    if (out.length > 0 && (out.charCodeAt(0) !== 0 || out.charCodeAt(out.length - 1) !== 0)) {
      problems.push('stdout is not all NUL at its ends');
    }
  }
  if (result?.stderr !== '') problems.push(`stderr ${JSON.stringify(String(result?.stderr).slice(0, 200))}`);
  if (result?.error) problems.push(`error ${result.error}`);
  // Ours reports what its tail buffer dropped: say so, it explains a short stdout.
  if (result?.stdoutDroppedBytes > 0) problems.push(`stdoutDroppedBytes ${result.stdoutDroppedBytes}`);
  return problems;
}

// A parent that holds 2 GiB of touched memory: libuv forks, and fork() must copy
// the page tables of every mapped, touched page, so its cost grows with the
// parent's footprint. Buffers are off the V8 heap, which is fine: what matters
// is the process's mappings, not which allocator owns them.
const HEAP_BYTES = 2 * 1024 * MiB;
const HEAP_CHUNK = 64 * MiB;
let heldMemory = null; // module-level so it stays alive for the whole process

const CAPTURE_BYTES = 256 * MiB; // 268435456
const STREAM_BYTES = 128 * MiB; // 134217728
const UTF8_BYTES = 64 * MiB;
// 16 bytes, 13 characters: ASCII with two- and three-byte characters.
const UTF8_LINE = 'frame é € done\n';
let utf8File = null;

const LAG_JOBS = 8;
const LAG_BYTES = 8 * MiB; // 8388608
const LAG_TICK_MS = 10;

export const SCENARIOS = {
  'spawn-heap-2g': {
    description: `200 × true, 8 at once, parent holding 2 GiB of touched memory`,
    jobs: 200,
    setup() {
      heldMemory = [];
      for (let held = 0; held < HEAP_BYTES; held += HEAP_CHUNK) {
        // allocUnsafeSlow: a dedicated allocation per chunk; fill() touches every page.
        heldMemory.push(Buffer.allocUnsafeSlow(HEAP_CHUNK).fill(1));
      }
    },
    run: spawnMany(200, 8),
    check(results) {
      // Make sure the held memory is still there (and referenced after timing).
      const held = heldMemory.reduce((sum, b) => sum + b.length, 0);
      if (held !== HEAP_BYTES) return { ok: false, detail: `held ${held} bytes, not ${HEAP_BYTES}` };
      return checkSpawnMany(200)(results);
    },
  },

  'spawn-serial': {
    description: '200 × true, one at a time',
    jobs: 200,
    run: spawnMany(200, 1),
    check: checkSpawnMany(200),
  },

  'spawn-16': {
    description: '400 × true, 16 at once',
    jobs: 400,
    run: spawnMany(400, 16),
    check: checkSpawnMany(400),
  },

  'capture-256m': {
    description: '256 MiB of stdout captured into result.stdout',
    // maxBuffer is read by ours only (its per-stream tail buffer defaults to
    // 100 MB); child_process has none, execa gets its own large cap.
    run: (adapter) => adapter.execute(headJob(CAPTURE_BYTES, { maxBuffer: CAPTURE_BYTES })),
    check(result) {
      const problems = checkHead(result, CAPTURE_BYTES);
      return problems.length
        ? { ok: false, detail: problems.join('; ') }
        : { ok: true, detail: `captured ${CAPTURE_BYTES} bytes` };
    },
  },

  // Not a goal of the issue: shows the non-ASCII path (ours copies into V8 there,
  // while ASCII output is handed over without a copy).
  'capture-64m-utf8': {
    description: '64 MiB of non-ASCII UTF-8 stdout (cat of a prepared file) captured',
    setup() {
      utf8File = join(mkdtempSync(join(tmpdir(), 'lw-bench-')), 'utf8.txt');
      writeFileSync(utf8File, UTF8_LINE.repeat(Math.floor(UTF8_BYTES / Buffer.byteLength(UTF8_LINE))));
    },
    run: (adapter) => adapter.execute({ command: CAT, args: [utf8File], maxBuffer: UTF8_BYTES }),
    check(result) {
      const lines = Math.floor(UTF8_BYTES / Buffer.byteLength(UTF8_LINE));
      if (result?.exitCode !== 0) return { ok: false, detail: `exitCode ${result?.exitCode}` };
      const exact = result.stdout.length === lines * UTF8_LINE.length && result.stdout === UTF8_LINE.repeat(lines);
      // The naive child_process adapter decodes each chunk on its own, so a character
      // split across chunks becomes U+FFFD: reported, not failed (it is the baseline).
      const replaced = exact ? 0 : (result.stdout.match(/\uFFFD/g) ?? []).length;
      return { ok: true, detail: exact ? `captured ${lines} lines exactly` : `CORRUPTED: ${replaced} U+FFFD` };
    },
  },

  'stream-128m': {
    description: '128 MiB of stdout streamed to onStdout (and kept in the result)',
    async run(adapter) {
      let counted = 0;
      let calls = 0;
      const result = await adapter.execute(
        headJob(STREAM_BYTES, {
          maxBuffer: STREAM_BYTES,
          onStdout: (data) => {
            counted += data.length;
            calls++;
          },
        }),
      );
      return { result, counted, calls };
    },
    check({ result, counted, calls }) {
      const problems = checkHead(result, STREAM_BYTES);
      if (counted !== STREAM_BYTES) problems.push(`onStdout counted ${counted} !== ${STREAM_BYTES}`);
      return problems.length
        ? { ok: false, detail: problems.join('; ') }
        : { ok: true, detail: `streamed ${STREAM_BYTES} bytes in ${calls} callbacks` };
    },
  },

  'loop-lag': {
    description: `event-loop lag: ${LAG_JOBS} jobs × 8 MiB streamed to onStdout, ${LAG_TICK_MS} ms interval`,
    async run(adapter) {
      // The longest gap between interval ticks is how long the event loop was
      // unable to run anything else (plus the nominal 10 ms period).
      let last = performance.now();
      let maxGap = 0;
      const timer = setInterval(() => {
        const now = performance.now();
        maxGap = Math.max(maxGap, now - last);
        last = now;
      }, LAG_TICK_MS);
      const counts = new Array(LAG_JOBS).fill(0);
      const results = await Promise.all(
        counts.map((_, i) =>
          adapter.execute(
            headJob(LAG_BYTES, {
              onStdout: (data) => {
                counts[i] += data.length;
              },
            }),
          ),
        ),
      );
      // A block right before completion would have no tick after it: count the tail too.
      maxGap = Math.max(maxGap, performance.now() - last);
      clearInterval(timer);
      return { results, counts, lagMs: maxGap };
    },
    check({ results, counts, lagMs }) {
      const problems = [];
      results.forEach((r, i) => {
        for (const p of checkHead(r, LAG_BYTES)) problems.push(`job ${i}: ${p}`);
        if (counts[i] !== LAG_BYTES) problems.push(`job ${i}: onStdout counted ${counts[i]}`);
      });
      return problems.length
        ? { ok: false, detail: problems.slice(0, 4).join('; '), lagMs }
        : { ok: true, detail: `${LAG_JOBS} × ${LAG_BYTES} bytes, max tick gap ${lagMs.toFixed(1)} ms`, lagMs };
    },
  },
};

export const SCENARIO_NAMES = Object.keys(SCENARIOS);

/** Short description of a result for failure messages (never dumps big outputs). */
export function describe(r) {
  if (r === undefined || r === null) return String(r);
  const short = (s) => (typeof s === 'string' ? `${s.length} chars ${JSON.stringify(s.slice(0, 80))}` : typeof s);
  return `exitCode=${r.exitCode} stdout=${short(r.stdout)} stderr=${short(r.stderr)}${r.error ? ` error=${r.error}` : ''}`;
}
