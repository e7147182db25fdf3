// `npm run pack:all`: builds the addon for every target in package.json `napi.targets` on this
// x86-64 machine (cross-linked by zig through `napi build -x`), checks each binary's libc floor,
// and writes to dist/ the main package's tarball and one tarball per platform package.
//
// The platform package folders are generated (`napi create-npm-dirs`, `napi artifacts`) in a
// staging folder, target/pack/, never in the source tree. Each also gets the supervisor executable
// (`local-worker`, the supervisor/ crate) beside its .node: one static musl build per architecture,
// which runs on any Linux of that architecture, glibc or musl. Installs what it uses: the rustup
// targets, and zig + cargo-zigbuild from PyPI.
//
// Options: --targets a,b (a subset of napi.targets), --skip-build (reuse target/pack/artifacts).
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const staging = join(root, 'target', 'pack')
const artifacts = join(staging, 'artifacts')
const dist = join(root, 'dist')
/** The newest glibc symbol version a gnu binary may need: Debian 10, RHEL 8, Amazon Linux 2023, Ubuntu 20.04. */
export const GLIBC_FLOOR = '2.28'
/** What the main package ships besides package.json (package.json `files`). */
const MAIN_FILES = pkg.files

const args = process.argv.slice(2)
const option = (name) => {
  const i = args.indexOf(name)
  return i === -1 ? undefined : args[i + 1]
}
const targets = option('--targets')?.split(',') ?? pkg.napi.targets
const skipBuild = args.includes('--skip-build')

function run(command, argv, options = {}) {
  const started = Date.now()
  const result = spawnSync(command, argv, { cwd: root, stdio: 'inherit', ...options })
  if (result.error) throw result.error
  if (result.status !== 0) throw new Error(`${command} ${argv.join(' ')} exited with ${result.status}`)
  return Date.now() - started
}

function output(command, argv) {
  const result = spawnSync(command, argv, { cwd: root, encoding: 'utf8' })
  return result.status === 0 ? result.stdout : null
}

/** napi's platform name of a Rust target: aarch64-unknown-linux-musl -> linux-arm64-musl. */
export function platformOf(target) {
  const [arch, , os, abi] = target.split('-')
  const cpu = { x86_64: 'x64', aarch64: 'arm64' }[arch] ?? arch
  return [os, cpu, abi].filter(Boolean).join('-')
}

/** The supervisor's build for a target's architecture: static, linked with musl. */
export function supervisorTarget(target) {
  return `${target.split('-')[0]}-unknown-linux-musl`
}
const SUPERVISOR = 'local-worker'

function ensureToolchain() {
  const installed = output('rustup', ['target', 'list', '--installed'])?.split('\n') ?? []
  const wanted = [...new Set([...targets, ...targets.map(supervisorTarget)])]
  const missing = wanted.filter((t) => !installed.includes(t))
  if (missing.length > 0) run('rustup', ['target', 'add', ...missing])
  if (output('cargo', ['zigbuild', '--version']) === null || output('python3', ['-m', 'ziglang', 'version']) === null) {
    run('python3', ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', 'ziglang', 'cargo-zigbuild'])
  }
}

/** glibc targets are pinned to the floor: zig links against that version's symbols. */
function zigTarget(target) {
  return target.endsWith('-gnu') ? `${target}.${GLIBC_FLOOR}` : target
}

function build(target) {
  const ms = run('npx', [
    'napi', 'build', '--platform', '--release', '-x',
    '--target', zigTarget(target),
    '--output-dir', artifacts,
    // The typings and loader in the tree are the ones to ship; write the by-products aside.
    '--no-js', '--dts', 'scratch/index.d.ts',
  ])
  console.log(`pack:all: built ${target} in ${(ms / 1000).toFixed(1)} s`)
}

/** Builds the supervisor for `target` (a musl triple) into target/pack/supervisor/<target>/. */
function buildSupervisor(target) {
  const ms = run('cargo', ['zigbuild', '--release', '-p', 'local-worker-supervisor', '--target', target])
  const dir = join(artifacts, '..', 'supervisor', target)
  mkdirSync(dir, { recursive: true })
  cpSync(join(root, 'target', target, 'release', SUPERVISOR), join(dir, SUPERVISOR))
  console.log(`pack:all: built the supervisor for ${target} in ${(ms / 1000).toFixed(1)} s`)
}

/** Fails unless the supervisor is a static executable: no interpreter, no shared library. */
function checkStatic(file) {
  const headers = output('readelf', ['-l', '-d', '-W', file]) ?? ''
  if (/INTERP|\(NEEDED\)/.test(headers)) throw new Error(`${file} is not static:\n${headers}`)
  console.log(`pack:all: ${file.split('/').slice(-2).join('/')} is static`)
}

/** Version strings (GLIBC_2.17, ...) a binary needs, read with readelf (any architecture). */
function neededVersions(file) {
  const text = output('readelf', ['-V', '-W', file])
  if (text === null) throw new Error(`readelf -V ${file} failed`)
  return [...text.matchAll(/Name: (GLIBC_[0-9.]+)/g)].map((m) => m[1])
}

const versionKey = (v) => v.replace('GLIBC_', '').split('.').map(Number)
function compareVersions(a, b) {
  const [x, y] = [versionKey(a), versionKey(b)]
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0)
  }
  return 0
}

/** Fails unless a gnu binary needs at most GLIBC_<floor> and a musl binary needs no glibc at all. */
function checkLibc(target, file) {
  const versions = neededVersions(file)
  const interp = output('readelf', ['-d', '-W', file]) ?? ''
  if (target.endsWith('-musl')) {
    if (versions.length > 0 || !/libc\.so/.test(interp)) {
      throw new Error(`${file}: a musl binary must link libc.so without glibc versions, got ${versions.join(', ')}`)
    }
    console.log(`pack:all: ${platformOf(target)} links musl's libc.so`)
    return
  }
  const newest = versions.sort(compareVersions).at(-1)
  if (compareVersions(newest, `GLIBC_${GLIBC_FLOOR}`) > 0) {
    throw new Error(`${file} needs ${newest}, above the floor GLIBC_${GLIBC_FLOOR}`)
  }
  console.log(`pack:all: ${platformOf(target)} needs at most ${newest}`)
}

function writeJson(file, value) {
  writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`)
}

function main() {
  if (!skipBuild) {
    ensureToolchain()
    rmSync(staging, { recursive: true, force: true })
    mkdirSync(artifacts, { recursive: true })
    for (const target of targets) build(target)
    for (const target of new Set(targets.map(supervisorTarget))) buildSupervisor(target)
  }
  for (const target of new Set(targets.map(supervisorTarget))) {
    checkStatic(join(staging, 'supervisor', target, SUPERVISOR))
  }
  for (const target of targets) {
    checkLibc(target, join(artifacts, `${pkg.napi.binaryName}.${platformOf(target)}.node`))
  }

  // The main package, as published: the tree's files, no scripts or devDependencies, and one
  // optional dependency per platform package (npm installs the one whose os/cpu/libc match).
  const main = join(staging, 'main')
  rmSync(main, { recursive: true, force: true })
  mkdirSync(main, { recursive: true })
  for (const file of [...MAIN_FILES, 'README.md']) cpSync(join(root, file), join(main, file), { recursive: true })
  const { scripts, devDependencies, ...published } = pkg
  published.napi = { ...pkg.napi, targets }
  published.optionalDependencies = Object.fromEntries(
    targets.map((t) => [`${pkg.name}-${platformOf(t)}`, pkg.version]),
  )
  writeJson(join(main, 'package.json'), published)

  // The platform packages: generated by napi from the main package's manifest, inside its folder
  // (napi keeps them within the package's boundary; `files` leaves them out of its tarball).
  const npmDir = join(main, 'npm')
  rmSync(npmDir, { recursive: true, force: true })
  run('npx', ['napi', 'create-npm-dirs', '--cwd', main, '--npm-dir', npmDir])
  run('npx', ['napi', 'artifacts', '--cwd', main, '--output-dir', artifacts, '--npm-dir', npmDir])
  // Beside each .node, its architecture's supervisor, listed in the package's files, and the
  // package's command: npm links it as node_modules/.bin/local-worker (`local-worker run`).
  for (const target of targets) {
    const dir = join(npmDir, platformOf(target))
    cpSync(join(staging, 'supervisor', supervisorTarget(target), SUPERVISOR), join(dir, SUPERVISOR))
    const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'))
    manifest.files = [...new Set([...(manifest.files ?? []), SUPERVISOR])]
    manifest.bin = { [SUPERVISOR]: SUPERVISOR }
    writeJson(join(dir, 'package.json'), manifest)
  }

  rmSync(dist, { recursive: true, force: true })
  mkdirSync(dist, { recursive: true })
  const packed = []
  for (const dir of [main, ...targets.map((t) => join(npmDir, platformOf(t)))]) {
    const files = readdirSync(dir)
    if (dir !== main && !files.some((f) => f.endsWith('.node'))) throw new Error(`${dir} holds no .node`)
    if (dir !== main && !files.includes(SUPERVISOR)) throw new Error(`${dir} holds no ${SUPERVISOR}`)
    const result = spawnSync('npm', ['pack', '--silent', '--pack-destination', dist], { cwd: dir, encoding: 'utf8' })
    if (result.status !== 0) throw new Error(`npm pack in ${dir} failed:\n${result.stderr}`)
    packed.push(result.stdout.trim())
  }
  console.log(`pack:all: wrote ${packed.length} tarballs to dist/:\n  ${packed.join('\n  ')}`)
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  try {
    main()
  } catch (error) {
    console.error(`pack:all: ${error.message}`)
    process.exit(1)
  }
}

