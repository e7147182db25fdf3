// The three adapters compared by the benchmark, all behind the same
// `execute(job): Promise<WorkerResult>` shape so that scenarios are written once.
//
// Each factory is loaded lazily (dynamic import / require inside the factory):
// a measurement process loads only the adapter it measures, so that peak RSS and
// start-up work of one adapter never leak into another adapter's numbers.

import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

// Repository root: `require(ROOT)` resolves package.json "main" (index.js),
// exactly like a consumer requiring the package.
export const ROOT = fileURLToPath(new URL('..', import.meta.url));

// execa's maxBuffer is an error threshold (in characters for text output), not a
// tail buffer: it must sit above the largest scenario (256 MiB) or execa would
// kill the subprocess and fail the result.
const EXECA_MAX_BUFFER = 1024 * 1024 * 1024;

export const ADAPTER_NAMES = ['ours', 'child_process', 'execa'];
/**
 * Measured besides the others where a scenario counts its jobs (`jobs`): ours with
 * process-group containment only (LOCAL_WORKER_SUPERVISOR=off), to show what the
 * supervisor per job costs.
 */
export const GROUPED = 'ours-grouped';
/**
 * Not an adapter: the floor of serial spawning, measured beside scenarios that run their
 * jobs one at a time (`serial`). `core/examples/spawn_floor.rs` runs the same jobs with
 * `posix_spawn` + `waitpid` in a loop, as a C program would; bench/run.mjs builds it.
 */
export const FLOOR = 'floor';
export const FLOOR_PROGRAM = fileURLToPath(new URL('../target/release/examples/spawn_floor', import.meta.url));

/** (1) ours: the native addon, one adapter instance reused for every job. */
async function createOurs() {
  const require = createRequire(import.meta.url);
  const { LocalWorkerAdapter } = require(ROOT);
  const worker = new LocalWorkerAdapter();
  return {
    // Only forward the fields the job actually sets, so the addon's option
    // parsing sees the same job shape a TypeScript caller would send.
    execute: (job) => worker.execute(compact(job)),
  };
}

/** (1b) ours without a supervisor per job: jobs contained by their process group only. */
async function createOursGrouped() {
  // Read once, when the first adapter is constructed.
  process.env.LOCAL_WORKER_SUPERVISOR = 'off';
  return createOurs();
}

/**
 * (2) child_process: a copy of how the TypeScript infrastructure package does it
 * today (kept deliberately naive, since that's the baseline being replaced):
 * env merged per job, per-chunk `toString()`, `+=` concatenation, per-chunk
 * callbacks, resolve on 'close', reject on 'error'. It has no maxBuffer, so
 * `job.maxBuffer` is ignored.
 */
async function createChildProcess() {
  const { spawn } = await import('node:child_process');
  return {
    execute(job) {
      return new Promise((resolve, reject) => {
        const start = Date.now();
        const child = spawn(job.command, job.args ?? [], {
          cwd: job.cwd,
          env: { ...process.env, ...job.env },
        });
        if (job.encoding === 'buffer') {
          // Bytes: the chunks as they come, concatenated at the end.
          const out = [];
          const err = [];
          child.stdout.on('data', (data) => {
            out.push(data);
            job.onStdout?.(data);
          });
          child.stderr.on('data', (data) => {
            err.push(data);
            job.onStderr?.(data);
          });
          child.on('error', reject);
          child.on('close', (code) => {
            resolve({ exitCode: code ?? 0, stdout: Buffer.concat(out), stderr: Buffer.concat(err), durationMs: Date.now() - start });
          });
          return;
        }
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (data) => {
          const text = data.toString();
          stdout += text;
          job.onStdout?.(text);
        });
        child.stderr.on('data', (data) => {
          const text = data.toString();
          stderr += text;
          job.onStderr?.(text);
        });
        child.on('error', reject);
        child.on('close', (code) => {
          resolve({ exitCode: code ?? 0, stdout, stderr, durationMs: Date.now() - start });
        });
      });
    },
  };
}

/**
 * (3) execa 9: buffered result (`buffer: true`), no stdin, no final-newline
 * stripping, `reject: false` so a non-zero exit is a result rather than an
 * exception (like the other two). Streaming uses plain
 * `subprocess.stdout.on('data')` next to execa's own buffering: it's the
 * simplest way to see chunks as they arrive, and it costs the same per-chunk
 * `toString()` as the child_process adapter. (A `lines`/transform generator
 * would split on newlines, which makes no sense for /dev/zero output.)
 */
async function createExeca() {
  const { execa } = await import('execa');
  return {
    async execute(job) {
      const start = Date.now();
      const subprocess = execa(job.command, job.args ?? [], {
        cwd: job.cwd,
        env: job.env, // execa merges with process.env itself (extendEnv: true)
        reject: false,
        stdin: 'ignore',
        buffer: true,
        maxBuffer: EXECA_MAX_BUFFER,
        stripFinalNewline: false,
        ...(job.encoding === 'buffer' ? { encoding: 'buffer' } : {}),
      });
      const toText = job.encoding === 'buffer' ? (data) => data : (data) => (typeof data === 'string' ? data : data.toString());
      if (job.onStdout) subprocess.stdout.on('data', (data) => job.onStdout(toText(data)));
      if (job.onStderr) subprocess.stderr.on('data', (data) => job.onStderr(toText(data)));
      const result = await subprocess;
      return {
        // undefined when the process could not start or died of a signal:
        // -1 makes the benchmark's exit-code check fail loudly in that case.
        exitCode: result.exitCode ?? -1,
        stdout: result.stdout,
        stderr: result.stderr,
        durationMs: Date.now() - start,
        ...(result.failed ? { error: result.shortMessage } : {}),
      };
    },
  };
}

const FACTORIES = {
  ours: createOurs,
  [GROUPED]: createOursGrouped,
  child_process: createChildProcess,
  execa: createExeca,
};

export async function createAdapter(name) {
  const factory = FACTORIES[name];
  if (!factory) throw new Error(`unknown adapter "${name}" (known: ${[...ADAPTER_NAMES, GROUPED].join(', ')})`);
  return factory();
}

function compact(job) {
  const out = {};
  for (const [key, value] of Object.entries(job)) if (value !== undefined) out[key] = value;
  return out;
}
