// The interfaces of @helios-project/infrastructure, as that package declares them:
// our typings must interoperate with these in both directions.
declare namespace Infrastructure {
  interface WorkerJob {
    command: string
    args?: string[]
    env?: Record<string, string>
    cwd?: string
    timeout?: number
    meta?: Record<string, any>
    signal?: AbortSignal
    onStdout?: (data: string) => void
    onStderr?: (data: string) => void
  }
  interface WorkerResult {
    exitCode: number
    stdout: string
    stderr: string
    durationMs: number
  }
  interface WorkerAdapter {
    execute(job: WorkerJob): Promise<WorkerResult>
  }
}
