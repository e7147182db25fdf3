// Builds the supervisor executable (`local-worker`, the supervisor/ crate) for this machine and puts
// it beside the addon's .node in the tree, where the addon looks for it (as it does in a platform
// package). `npm run build` runs it after `napi build`; pack:all builds the published ones.
//
// Built as the published one is: static, linked with musl, for this machine's architecture
// (<arch>-unknown-linux-musl; the rustup target is added when missing), so that tests and the
// bench run what ships. Into target/<triple>/, where it does not invalidate napi build's cache in
// target/release (a plain `cargo build --release` would).
import { copyFileSync, chmodSync } from 'node:fs'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const profile = process.argv.includes('--debug') ? 'debug' : 'release'

const rustc = spawnSync('rustc', ['-vV'], { encoding: 'utf8' })
const hostTriple = /^host: (.+)$/m.exec(rustc.stdout ?? '')?.[1]
if (!hostTriple) {
  console.error(`build-supervisor: cannot tell the host target from rustc -vV: ${rustc.stderr ?? rustc.error}`)
  process.exit(1)
}
const host = `${hostTriple.split('-')[0]}-unknown-linux-musl`
const installed = spawnSync('rustup', ['target', 'list', '--installed'], { encoding: 'utf8' }).stdout?.split('\n') ?? []
if (!installed.includes(host)) {
  const added = spawnSync('rustup', ['target', 'add', host], { stdio: 'inherit' })
  if (added.status !== 0) process.exit(added.status ?? 1)
}
const args = ['build', '-p', 'local-worker-supervisor', '--target', host, ...(profile === 'release' ? ['--release'] : [])]
const built = spawnSync('cargo', args, { cwd: root, stdio: 'inherit' })
if (built.status !== 0) process.exit(built.status ?? 1)
const destination = join(root, 'local-worker')
copyFileSync(join(root, 'target', host, profile, 'local-worker'), destination)
chmodSync(destination, 0o755)
console.log(`build-supervisor: ${destination} (${host}, ${profile})`)
