// Demo: render a video as parallel chunks, like Helios does, with the local adapter.
// Four chunks stream progress; one hits its timeout; one is aborted; then a table.
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)
const { LocalWorkerAdapter } = require('../index.js')

const renderer = fileURLToPath(new URL('./fake-renderer.mjs', import.meta.url))
const adapter = new LocalWorkerAdapter({ killGracePeriod: 1000 })
const controller = new AbortController()

const chunks = [
  { name: 'chunk 0', frames: 8, msPerFrame: 60, memMiB: 32 },
  { name: 'chunk 1', frames: 8, msPerFrame: 60, memMiB: 64 },
  { name: 'chunk 2', frames: 8, msPerFrame: 60, memMiB: 96 },
  { name: 'chunk 3', frames: 8, msPerFrame: 60, memMiB: 128 },
  { name: 'chunk 4 (timeout 1 s)', frames: 100, msPerFrame: 60, memMiB: 16, timeout: 1000 },
  { name: 'chunk 5 (aborted)', frames: 100, msPerFrame: 60, memMiB: 16, signal: controller.signal },
]

setTimeout(() => controller.abort(new Error('render cancelled by the user')), 1200)

const rows = await Promise.all(chunks.map(async (chunk, i) => {
  try {
    const result = await adapter.execute({
      command: process.execPath,
      args: [renderer, String(i), String(chunk.frames), String(chunk.msPerFrame), String(chunk.memMiB)],
      timeout: chunk.timeout,
      signal: chunk.signal,
      onStdout: (data) => process.stdout.write(`  [${chunk.name}] ${data.trimEnd().split('\n').at(-1)}\n`),
    })
    return { chunk: chunk.name, outcome: `exit ${result.exitCode}`, ...figures(result) }
  } catch (error) {
    return { chunk: chunk.name, outcome: `${error.code}`, ...figures(error) }
  }
}))

function figures(r) {
  const lines = (r.stdout ?? '').split('\n').filter(Boolean)
  return {
    frames: lines.length,
    ms: Math.round(r.durationMs ?? 0),
    'peak RSS MiB': r.resourceUsage ? (r.resourceUsage.maxRssKb / 1024).toFixed(0) : '-',
    'CPU ms': r.resourceUsage ? Math.round(r.resourceUsage.userCpuMs + r.resourceUsage.systemCpuMs) : '-',
  }
}

console.log()
console.table(rows)
