// Builds the addon from source when it is missing or older than its sources, so that a fresh
// clone needs only `npm install` then `npm test` (or `npm start`).
import { existsSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const SOURCES = ['Cargo.toml', 'Cargo.lock', 'build.rs', 'package.json', 'types/header.d.ts', 'src', 'core/src', 'core/Cargo.toml']

function newest(path) {
  const stat = statSync(path)
  if (!stat.isDirectory()) return stat.mtimeMs
  return Math.max(0, ...readdirSync(path).map((name) => newest(join(path, name))))
}

// The binary `napi build --platform` writes for this machine: local-worker.<os>-<arch>[-<abi>].node
const prefix = `local-worker.${process.platform}-${process.arch}`
const addons = readdirSync(root).filter((name) => name.startsWith(prefix) && name.endsWith('.node'))
const built = addons.length > 0 ? statSync(join(root, addons[0])).mtimeMs : -1
const sources = Math.max(...SOURCES.filter((p) => existsSync(join(root, p))).map((p) => newest(join(root, p))))

if (built >= sources) {
  console.log('build-if-needed: the addon is up to date')
} else {
  const result = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' })
  process.exit(result.status ?? 1)
}
