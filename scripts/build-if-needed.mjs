// Builds the addon and its supervisor from source when either is missing or older than its sources, so that a fresh
// clone needs only `npm install` then `npm test` (or `npm start`).
import { existsSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const SOURCES = ['Cargo.toml', 'Cargo.lock', 'build.rs', 'package.json', 'types/header.d.ts', 'src', 'core/src', 'core/Cargo.toml', 'supervisor/src', 'supervisor/Cargo.toml']

function newest(path) {
  const stat = statSync(path)
  if (!stat.isDirectory()) return stat.mtimeMs
  return Math.max(0, ...readdirSync(path).map((name) => newest(join(path, name))))
}

// The binary `napi build --platform` writes for this machine: local-worker.<os>-<arch>[-<abi>].node
const prefix = `local-worker.${process.platform}-${process.arch}`
const addons = readdirSync(root).filter((name) => name.startsWith(prefix) && name.endsWith('.node'))
// Both the addon and, beside it, its supervisor executable (scripts/build-supervisor.mjs).
const outputs = addons.length > 0 ? [join(root, addons[0]), join(root, 'local-worker')] : []
const built = outputs.length > 0 && outputs.every(existsSync) ? Math.min(...outputs.map((f) => statSync(f).mtimeMs)) : -1
const sources = Math.max(...SOURCES.filter((p) => existsSync(join(root, p))).map((p) => newest(join(root, p))))

if (built >= sources) {
  console.log('build-if-needed: the addon is up to date')
} else {
  const result = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' })
  process.exit(result.status ?? 1)
}
