// Type-level checks that @helios-project/local-worker is a drop-in for the
// TypeScript LocalWorkerAdapter of @helios-project/infrastructure.
import {
  LocalWorkerAdapter,
  type WorkerAdapter,
  type WorkerJob,
  type WorkerResult,
  type WorkerJobError,
  type ResourceUsage,
  type BufferWorkerJob,
  implementation,
} from '../../index.js'

// Our class is assignable to the infrastructure's WorkerAdapter...
const asInfra: Infrastructure.WorkerAdapter = new LocalWorkerAdapter()
// ...and to our own.
const asOurs: WorkerAdapter = new LocalWorkerAdapter({ maxBuffer: 1024, killGracePeriod: 100 })

// The infrastructure's jobs are accepted by our execute.
declare const infraJob: Infrastructure.WorkerJob
const pending: Promise<WorkerResult> = asOurs.execute(infraJob)

// Our result is assignable to the infrastructure's; exitCode is a number, never null.
async function useResult(): Promise<Infrastructure.WorkerResult> {
  const result = await new LocalWorkerAdapter().execute({ command: 'true' })
  const code: number = result.exitCode
  const usage: ResourceUsage | undefined = result.resourceUsage
  void code, usage
  return result
}

// A cloud adapter written against our WorkerAdapter returns just the four fields.
class CloudRunAdapter implements WorkerAdapter {
  async execute(job: WorkerJob): Promise<WorkerResult> {
    return { exitCode: 0, stdout: job.command, stderr: '', durationMs: 1 }
  }
}
const cloud: Infrastructure.WorkerAdapter = new CloudRunAdapter()

// Our job type is usable where the infrastructure's is expected (no required additions).
const ourJob: WorkerJob = { command: 'ffmpeg', args: ['-i', 'in.mp4'], timeout: 1000, maxBuffer: 10 }
const infraFromOurs: Infrastructure.WorkerJob = ourJob

function describe(error: unknown): string {
  const e = error as WorkerJobError
  return `${e.code} ${e.stdout ?? ''}`
}

// @ts-expect-error: exitCode must be a number
const wrong: WorkerResult = { exitCode: null, stdout: '', stderr: '', durationMs: 0 }

// encoding: 'buffer' jobs get Buffers; text jobs (explicitly 'utf8' or not) still get strings.
async function buffers(): Promise<Buffer> {
  const adapter = new LocalWorkerAdapter({ encoding: 'buffer' })
  const job: BufferWorkerJob = { command: 'head', args: ['-c', '16', '/dev/urandom'], encoding: 'buffer', onStdout: (data: Buffer) => void data.length }
  const result: WorkerResult<Buffer> = await adapter.execute(job)
  const text: WorkerResult = await adapter.execute({ command: 'echo', encoding: 'utf8' })
  const inline = await adapter.execute({ command: 'cat', encoding: 'buffer' })
  const bytes: Buffer = inline.stdout
  const string: string = text.stdout
  // @ts-expect-error: a Buffer job's stdout is not a string
  const notText: string = result.stdout
  // @ts-expect-error: a Buffer job's callback gets Buffers, not strings
  const wrongCallback: BufferWorkerJob = { command: 'cat', encoding: 'buffer', onStdout: (data: string) => void data }
  // @ts-expect-error: only 'utf8' and 'buffer'
  const wrongEncoding: WorkerJob = { command: 'cat', encoding: 'latin1' }
  const failed = (error: unknown) => (error as WorkerJobError<Buffer>).stdout?.byteLength
  void string, notText, wrongCallback, wrongEncoding, failed
  return Buffer.concat([result.stdout, bytes])
}

// The implementation in use is one of two names.
const which: 'native' | 'js' = implementation

void which, asInfra, pending, useResult, cloud, infraFromOurs, describe, wrong, buffers
