// Workloads of the benchmark. Each scenario has:
//   jobs                    (spawn scenarios) how many jobs run() starts: the bench then also
//                           measures ours without its supervisors and prints their cost per job,
//   serial                  the jobs run one at a time: the bench also measures the floor (the
//                           same jobs by posix_spawn + waitpid in a loop) and prints the cost
//                           per job above it,
//   setup()                 untimed preparation (e.g. the 2 GiB parent heap, input files),
//   run(adapter)            the timed part; returns whatever check() needs,
//   teardown()              untimed, right after run() (e.g. stop a busy process),
//   check(outcome, adapter) correctness, run after the clock stops: { ok, detail }.
//                           A baseline (child_process, execa) that corrupts text is reported
//                           as CORRUPTED but passes (it is what we compare with); ours fails.
//   baselineMayFail         the baselines cannot do this at all (their failure is reported,
//                           it does not fail the bench).
// scenario.mjs measures the event loop's longest gap (a 5 ms interval) around run() for
// every scenario and adapter.
//
// Commands are given as absolute paths so that no adapter pays (or skips) a
// PATH search the others don't: we compare process handling, not lookup.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { compareBytes, compareDecoded, dataFile, decodedFile, replacements } from './data.mjs';

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
/** V8's longest string, ours' largest maxBuffer. */
const MAX_STRING = 2 ** 29 - 24;
const TAIL_INPUT = 1024 * MiB;

/** `head -c bytes <file of kind>` (kind: 'utf8' or 'random'), with `extra` job fields. */
function headFile(kind, bytes, extra = {}) {
  return { command: HEAD, args: ['-c', String(bytes), dataFile(kind)], ...extra };
}

/** A baseline's wrong output is what it does: reported as CORRUPTED. Ours must be exact. */
function corrupted(adapter, detail) {
  return adapter === 'ours' ? { ok: false, detail } : { ok: true, detail: `CORRUPTED: ${detail}` };
}

/** The verdict on a text result (`what`) that should equal `bytes` of `kind` decoded at once. */
function textVerdict(adapter, what, text, kind, bytes) {
  const problem = compareDecoded(text, dataFile(kind), bytes);
  if (problem === null) return { ok: true, detail: `${what}: ${text.length} characters, exact` };
  // The naive baselines decode each chunk on its own: a character split across chunks becomes
  // U+FFFD. That is what they do, so it is reported; ours must be exact.
  return corrupted(adapter, `${what} ${problem} (${typeof text === 'string' ? replacements(text) : '?'} U+FFFD)`);
}

/** Captures `bytes` of `kind` (ascii: NUL bytes from /dev/zero) into result.stdout. */
function captureScenario(kind, bytes) {
  const job = () => (kind === 'ascii' ? headJob(bytes, { maxBuffer: bytes }) : headFile(kind, bytes, { maxBuffer: bytes }));
  return {
    description: `${bytes / MiB} MiB of ${kind} stdout captured into result.stdout`,
    setup() {
      if (kind !== 'ascii') dataFile(kind);
    },
    run: (adapter) => adapter.execute(job()),
    check(result, adapter) {
      if (kind === 'ascii') {
        const problems = checkHead(result, bytes);
        return problems.length ? { ok: false, detail: problems.join('; ') } : { ok: true, detail: `captured ${bytes} bytes` };
      }
      if (result?.exitCode !== 0) return { ok: false, detail: `exitCode ${result?.exitCode}` };
      return textVerdict(adapter, 'stdout', result.stdout, kind, bytes);
    },
  };
}

/** Streams `bytes` of `kind` to onStdout (and keeps them in the result); pieces checked as they come. */
function streamScenario(kind, bytes) {
  let expected = null;
  return {
    description: `${bytes / MiB} MiB of ${kind} stdout streamed to onStdout (and kept in the result)`,
    setup() {
      // The whole stream decoded at once, to compare each piece with as it arrives: the same
      // cost for every adapter (a flat string compared in place).
      expected = decodedFile(dataFile(kind), bytes);
    },
    async run(adapter) {
      let at = 0;
      let calls = 0;
      let firstBad = -1;
      const result = await adapter.execute(
        headFile(kind, bytes, {
          maxBuffer: bytes,
          onStdout: (data) => {
            if (firstBad < 0 && !expected.startsWith(data, at)) firstBad = at;
            at += data.length;
            calls++;
          },
        }),
      );
      return { result, at, calls, firstBad };
    },
    check({ result, at, calls, firstBad }, adapter) {
      if (result?.exitCode !== 0) return { ok: false, detail: `exitCode ${result?.exitCode}` };
      const problems = [];
      if (firstBad >= 0 || at !== expected.length) {
        problems.push(`onStdout pieces differ from the decoded stream (first at ${firstBad}, ${at} of ${expected.length} characters)`);
      }
      if (result.stdout !== expected) problems.push(`stdout differs (${result.stdout.length} of ${expected.length} characters)`);
      if (problems.length === 0) return { ok: true, detail: `streamed ${bytes} bytes in ${calls} callbacks, exact` };
      return corrupted(adapter, problems.join('; '));
    },
  };
}

let busy = null;

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
    serial: true,
    run: spawnMany(200, 1),
    check: checkSpawnMany(200),
  },

  'spawn-16': {
    description: '400 × true, 16 at once',
    jobs: 400,
    run: spawnMany(400, 16),
    check: checkSpawnMany(400),
  },

  // maxBuffer is read by ours only (its per-stream tail buffer defaults to 100 MB);
  // child_process has none, execa gets its own large cap.
  'capture-256m': captureScenario('ascii', CAPTURE_BYTES),

  // Not a goal of the issue: shows the non-ASCII path (ours copies into V8 there,
  // while ASCII output is handed over without a copy).
  'capture-64m-utf8': {
    description: '64 MiB of non-ASCII UTF-8 stdout (cat of a prepared file) captured',
    setup() {
      const dir = mkdtempSync(join(tmpdir(), 'lw-bench-'));
      process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
      utf8File = join(dir, 'utf8.txt');
      writeFileSync(utf8File, UTF8_LINE.repeat(Math.floor(UTF8_BYTES / Buffer.byteLength(UTF8_LINE))));
    },
    run: (adapter) => adapter.execute({ command: CAT, args: [utf8File], maxBuffer: UTF8_BYTES }),
    check(result, adapter) {
      const lines = Math.floor(UTF8_BYTES / Buffer.byteLength(UTF8_LINE));
      if (result?.exitCode !== 0) return { ok: false, detail: `exitCode ${result?.exitCode}` };
      const exact = result.stdout.length === lines * UTF8_LINE.length && result.stdout === UTF8_LINE.repeat(lines);
      // The naive child_process adapter decodes each chunk on its own, so a character
      // split across chunks becomes U+FFFD: reported, not failed (it is the baseline).
      const replaced = exact ? 0 : (result.stdout.match(/\uFFFD/g) ?? []).length;
      if (exact) return { ok: true, detail: `captured ${lines} lines exactly` };
      return corrupted(adapter, `${replaced} U+FFFD`);
    },
  },

  'capture-16m': captureScenario('ascii', 16 * MiB),
  'capture-16m-utf8': captureScenario('utf8', 16 * MiB),
  'capture-256m-utf8': captureScenario('utf8', 256 * MiB),
  'capture-16m-random': captureScenario('random', 16 * MiB),
  'capture-256m-random': captureScenario('random', 256 * MiB),

  'capture-1g-tail': {
    description: '1 GiB of ASCII stdout, maxBuffer at its maximum (2^29 - 24): the tail is kept',
    // child_process keeps everything (a string past V8's limit throws: the process dies);
    // execa fails the job past its maxBuffer. Neither can return the tail.
    baselineMayFail: true,
    run: (adapter) => adapter.execute(headJob(TAIL_INPUT, { maxBuffer: MAX_STRING })),
    check(result) {
      const problems = [];
      if (result?.exitCode !== 0) problems.push(`exitCode ${result?.exitCode}`);
      const out = result?.stdout;
      if (typeof out !== 'string' || out.length !== MAX_STRING) problems.push(`stdout of ${out?.length} characters, expected ${MAX_STRING}`);
      else if (out.charCodeAt(0) !== 0 || out.charCodeAt(out.length - 1) !== 0) problems.push('stdout is not NUL at its ends');
      if (result?.stdoutDroppedBytes !== TAIL_INPUT - MAX_STRING) problems.push(`stdoutDroppedBytes ${result?.stdoutDroppedBytes}`);
      return problems.length ? { ok: false, detail: problems.join('; ') } : { ok: true, detail: `kept the last ${MAX_STRING} bytes` };
    },
  },

  'capture-buffer-256m': {
    description: "256 MiB of raw frames (random bytes, head -c) captured with encoding: 'buffer'",
    setup() {
      dataFile('random');
    },
    run: (adapter) => adapter.execute(headFile('random', 256 * MiB, { maxBuffer: 256 * MiB, encoding: 'buffer' })),
    check(result) {
      if (result?.exitCode !== 0) return { ok: false, detail: `exitCode ${result?.exitCode}` };
      const problem = compareBytes(result.stdout, dataFile('random'), 256 * MiB);
      return problem === null ? { ok: true, detail: `captured ${256 * MiB} bytes exactly` } : { ok: false, detail: problem };
    },
  },

  'stream-128m-utf8': streamScenario('utf8', STREAM_BYTES),
  'stream-128m-random': streamScenario('random', STREAM_BYTES),

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
    description: `${LAG_JOBS} jobs × 8 MiB of NUL bytes streamed to onStdout at once (watch the loop gap)`,
    async run(adapter) {
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
      return { results, counts };
    },
    check({ results, counts }) {
      const problems = [];
      results.forEach((r, i) => {
        for (const p of checkHead(r, LAG_BYTES)) problems.push(`job ${i}: ${p}`);
        if (counts[i] !== LAG_BYTES) problems.push(`job ${i}: onStdout counted ${counts[i]}`);
      });
      return problems.length
        ? { ok: false, detail: problems.slice(0, 4).join('; ') }
        : { ok: true, detail: `${LAG_JOBS} × ${LAG_BYTES} bytes` };
    },
  },

  'loop-lag-random': {
    description: `${LAG_JOBS} jobs × 8 MiB of random bytes streamed to onStdout at once (watch the loop gap)`,
    setup() {
      this.expected = decodedFile(dataFile('random'), LAG_BYTES);
    },
    async run(adapter) {
      const expected = this.expected;
      const seen = Array.from({ length: LAG_JOBS }, () => ({ at: 0, bad: -1 }));
      const results = await Promise.all(
        seen.map((s) =>
          adapter.execute(
            headFile('random', LAG_BYTES, {
              onStdout: (data) => {
                if (s.bad < 0 && !expected.startsWith(data, s.at)) s.bad = s.at;
                s.at += data.length;
              },
            }),
          ),
        ),
      );
      return { results, seen };
    },
    check({ results, seen }, adapter) {
      const problems = [];
      results.forEach((r, i) => {
        if (r?.exitCode !== 0) problems.push(`job ${i}: exitCode ${r?.exitCode}`);
        if (r?.stdout !== this.expected) problems.push(`job ${i}: stdout differs`);
        if (seen[i].bad >= 0 || seen[i].at !== this.expected.length) problems.push(`job ${i}: onStdout differs from ${seen[i].bad}`);
      });
      if (problems.length === 0) return { ok: true, detail: `${LAG_JOBS} × ${LAG_BYTES} bytes, exact` };
      const detail = problems.slice(0, 4).join('; ');
      return problems.some((p) => p.includes('exitCode')) ? { ok: false, detail } : corrupted(adapter, detail);
    },
  },

  'spawn-serial-busy': {
    description: '200 × true, one at a time, while a CPU-bound process runs beside them',
    jobs: 200,
    serial: true,
    setup() {
      // One busy process for the machine's contention (started and stopped here; the
      // measurement process kills it at exit in any case).
      busy = spawn('/bin/sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' });
      process.on('exit', () => busy?.kill('SIGKILL'));
    },
    run: spawnMany(200, 1),
    teardown() {
      busy.kill('SIGKILL');
      busy = null;
    },
    check: checkSpawnMany(200),
  },
};

// In the order they run.
export const SCENARIO_NAMES = [
  'spawn-heap-2g', 'spawn-serial', 'spawn-serial-busy', 'spawn-16',
  'capture-16m', 'capture-256m', 'capture-16m-utf8', 'capture-256m-utf8', 'capture-16m-random', 'capture-256m-random',
  'capture-64m-utf8', 'capture-1g-tail', 'capture-buffer-256m',
  'stream-128m', 'stream-128m-utf8', 'stream-128m-random',
  'loop-lag', 'loop-lag-random',
];
for (const name of Object.keys(SCENARIOS)) if (!SCENARIO_NAMES.includes(name)) throw new Error(`scenario ${name} is not in SCENARIO_NAMES`);

/** Short description of a result for failure messages (never dumps big outputs). */
export function describe(r) {
  if (r === undefined || r === null) return String(r);
  const short = (s) => (typeof s === 'string' ? `${s.length} chars ${JSON.stringify(s.slice(0, 80))}` : typeof s);
  return `exitCode=${r.exitCode} stdout=${short(r.stdout)} stderr=${short(r.stderr)}${r.error ? ` error=${r.error}` : ''}`;
}
