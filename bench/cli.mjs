// The cost of `local-worker run` per job: the same command run directly and through it, side
// by side in one run, from the same launcher (spawnSync), rounds alternating.
//
//   npm run bench:cli                 # 5 rounds of 200 jobs each way
//   node bench/cli.mjs --rounds 3 --jobs 100 [--command /usr/bin/true]
import { spawnSync } from 'node:child_process'
import { rmSync } from 'node:fs'
import os from 'node:os'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const LOCAL_WORKER = join(ROOT, 'local-worker')
const option = (name, fallback) => {
  const i = process.argv.indexOf(name)
  return i === -1 ? fallback : process.argv[i + 1]
}
const rounds = Number(option('--rounds', 5))
const jobs = Number(option('--jobs', 200))
const command = option('--command', '/usr/bin/true')

const resultFile = join(os.tmpdir(), `lw-bench-cli-${process.pid}.json`)
process.on('exit', () => rmSync(resultFile, { force: true }))
const ways = {
  direct: [command, []],
  'local-worker run': [LOCAL_WORKER, ['run', '--', command]],
  'local-worker run --result': [LOCAL_WORKER, ['run', '--result', resultFile, '--', command]],
}

function measure([file, args]) {
  const started = performance.now()
  for (let i = 0; i < jobs; i++) {
    const result = spawnSync(file, args)
    if (result.status !== 0) throw new Error(`${file} ${args.join(' ')} exited with ${result.status}: ${result.stderr}`)
  }
  return (performance.now() - started) / jobs
}

const times = Object.fromEntries(Object.keys(ways).map((way) => [way, []]))
for (let round = 0; round < rounds; round++) {
  const order = Object.keys(ways)
  for (let i = 0; i < round % order.length; i++) order.push(order.shift())
  for (const way of order) times[way].push(measure(ways[way]))
}
const median = (values) => [...values].sort((a, b) => a - b)[values.length >> 1]
const direct = median(times.direct)
console.log(`${rounds} rounds × ${jobs} jobs of ${command}, each way; medians; load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}\n`)
console.log('way                          ms per job   overhead per job   ratio')
for (const [way, values] of Object.entries(times)) {
  const ms = median(values)
  console.log(`${way.padEnd(28)} ${ms.toFixed(3).padStart(10)}   ${(ms - direct).toFixed(3).padStart(16)}   ${(ms / direct).toFixed(2)}×`)
}
