// Installs the tarballs of `npm run pack:all` (dist/) into empty projects, as a user would, with
// no Rust toolchain on PATH, and runs a job through require() and import. Run by `npm run
// test:package`, after pack:all.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { accessSync, constants, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../..', import.meta.url))
const dist = join(root, 'dist')
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const NAME = pkg.name
const HOST_PLATFORM = 'linux-x64-gnu'

function tarball(suffix = '') {
  const file = `${NAME.replace('@', '').replace('/', '-')}${suffix}-${pkg.version}.tgz`
  const path = join(dist, file)
  assert.ok(readdirSync(dist).includes(file), `${path} is missing: run \`npm run pack:all\` first`)
  return path
}

function isExecutable(path) {
  try {
    accessSync(path, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** PATH without any folder that holds cargo, rustc or rustup: a machine without Rust. */
const pathWithoutRust = process.env.PATH.split(delimiter)
  .filter((dir) => !['cargo', 'rustc', 'rustup'].some((tool) => isExecutable(join(dir, tool))))
  .concat(dirname(process.execPath))
  .join(delimiter)
const envWithoutRust = { ...process.env, PATH: pathWithoutRust, LOCAL_WORKER_IMPLEMENTATION: '' }
delete envWithoutRust.CARGO_HOME
delete envWithoutRust.RUSTUP_HOME

function emptyProject(t) {
  const dir = mkdtempSync(join(tmpdir(), 'lw-install-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }))
  return dir
}

function npmInstall(dir, tarballs) {
  const started = performance.now()
  // --offline: the optional platform packages that do not match this machine are looked up in
  // the npm cache only (they are not published yet), so the test never depends on the registry.
  const result = spawnSync('npm', ['install', '--offline', '--no-audit', '--no-fund', ...tarballs], {
    cwd: dir,
    env: envWithoutRust,
    encoding: 'utf8',
  })
  assert.equal(result.status, 0, `npm install failed:\n${result.stdout}\n${result.stderr}`)
  return performance.now() - started
}

/** Runs `code` with node in `dir` (CommonJS, or ESM with `type: 'module'`). */
function node(dir, code, { type = 'commonjs', env = {} } = {}) {
  const argv = type === 'module' ? ['--input-type=module', '-e', code] : ['-e', code]
  return spawnSync(process.execPath, argv, { cwd: dir, env: { ...envWithoutRust, ...env }, encoding: 'utf8' })
}

// The job also says what its parent is: its supervisor (the platform package's local-worker
// executable), or Node itself without one.
const RUN_JOB_CJS = `
const { LocalWorkerAdapter, implementation } = require('${NAME}')
new LocalWorkerAdapter().execute({ command: 'sh', args: ['-c', 'echo "job ran: $0"; cat /proc/$PPID/comm', 'cjs'] })
  .then((r) => console.log(JSON.stringify({ implementation, stdout: r.stdout, exitCode: r.exitCode, usage: r.resourceUsage !== undefined })))
`
const RUN_JOB_ESM = `
import { LocalWorkerAdapter, implementation } from '${NAME}'
const r = await new LocalWorkerAdapter().execute({ command: 'sh', args: ['-c', 'echo "job ran: $0"', 'esm'] })
console.log(JSON.stringify({ implementation, stdout: r.stdout, exitCode: r.exitCode }))
`

test('no Rust toolchain is reachable on the PATH the installs use', () => {
  const result = spawnSync('cargo', ['--version'], { env: envWithoutRust })
  assert.equal(result.error?.code, 'ENOENT')
})

test('the main tarball and the x64-gnu tarball install in seconds, without Rust, and run a job through require and import', (t) => {
  const dir = emptyProject(t)
  const ms = npmInstall(dir, [tarball(), tarball(`-${HOST_PLATFORM}`)])
  t.diagnostic(`npm install took ${Math.round(ms)} ms`)
  assert.ok(ms < 60_000, `npm install took ${ms} ms`)

  const cjs = node(dir, RUN_JOB_CJS)
  assert.equal(cjs.status, 0, cjs.stderr)
  // Under the supervisor shipped in the platform package (a static musl executable), which
  // started without a warning.
  assert.deepEqual(JSON.parse(cjs.stdout), { implementation: 'native', stdout: 'job ran: cjs\nlw-supervisor\n', exitCode: 0, usage: true })
  assert.equal(cjs.stderr, '')
  const supervisor = join(dir, 'node_modules', `${NAME}-${HOST_PLATFORM}`, 'local-worker')
  assert.ok(isExecutable(supervisor), `${supervisor} is not executable`)
  // The platform package's command, linked by npm where a Dockerfile's ENTRYPOINT finds it.
  const command = spawnSync(join(dir, 'node_modules', '.bin', 'local-worker'), ['run', '--', 'sh', '-c', 'echo "command ran"; exit 5'], { encoding: 'utf8' })
  assert.equal(command.error, undefined)
  assert.equal(command.status, 5, command.stderr)
  assert.equal(command.stdout, 'command ran\n')

  const esm = node(dir, RUN_JOB_ESM, { type: 'module' })
  assert.equal(esm.status, 0, esm.stderr)
  assert.deepEqual(JSON.parse(esm.stdout), { implementation: 'native', stdout: 'job ran: esm\n', exitCode: 0 })
})

test('without a platform package the JavaScript implementation runs the job, and says so once', (t) => {
  const dir = emptyProject(t)
  npmInstall(dir, [tarball()])
  const cjs = node(dir, RUN_JOB_CJS)
  assert.equal(cjs.status, 0, cjs.stderr)
  assert.deepEqual(JSON.parse(cjs.stdout), { implementation: 'js', stdout: 'job ran: cjs\nnode\n', exitCode: 0, usage: false })
  assert.match(cjs.stderr, /LOCAL_WORKER_JS_FALLBACK/)
  assert.match(cjs.stderr, new RegExp(`${NAME}-${HOST_PLATFORM}`))

  // Forcing js is a choice, not a fallback: no warning.
  const forced = node(dir, RUN_JOB_CJS, { env: { LOCAL_WORKER_IMPLEMENTATION: 'js' } })
  assert.equal(forced.status, 0, forced.stderr)
  assert.equal(forced.stderr, '')
})

test('a binary that is installed but cannot load is an error naming the platform, the file and the reason', (t) => {
  const dir = emptyProject(t)
  npmInstall(dir, [tarball(), tarball(`-${HOST_PLATFORM}`)])
  const binary = join(dir, 'node_modules', `${NAME}-${HOST_PLATFORM}`, `local-worker.${HOST_PLATFORM}.node`)
  writeFileSync(binary, 'not an ELF file')
  const result = node(dir, `
    try { require('${NAME}') } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message, path: e.path, platform: e.platform })) }
  `)
  assert.equal(result.status, 0, result.stderr)
  const error = JSON.parse(result.stdout)
  assert.equal(error.code, 'ERR_LOCAL_WORKER_NATIVE_LOAD')
  assert.equal(error.platform, HOST_PLATFORM)
  assert.equal(error.path, binary)
  assert.ok(error.message.includes(binary), error.message)
  assert.match(error.message, /invalid ELF header|file too short/)
  assert.doesNotMatch(error.message, /npm has a bug/)
})

function manifestOf(file) {
  const result = spawnSync('tar', ['xzf', file, '-O', 'package/package.json'], { encoding: 'utf8' })
  assert.equal(result.status, 0, result.stderr)
  return JSON.parse(result.stdout)
}

test('the main package has no install script and one optional dependency per platform package', () => {
  const main = manifestOf(tarball())
  for (const hook of ['preinstall', 'install', 'postinstall', 'prepare']) assert.equal(main.scripts?.[hook], undefined, hook)
  const platforms = pkg.napi.targets.length
  assert.equal(Object.keys(main.optionalDependencies).length, platforms)
  for (const [name, version] of Object.entries(main.optionalDependencies)) {
    assert.equal(version, pkg.version, name)
    const platform = manifestOf(tarball(name.slice(NAME.length)))
    assert.equal(platform.name, name)
    assert.deepEqual(platform.os, ['linux'])
    assert.equal(platform.cpu.length, 1)
    assert.ok(name.endsWith(`-${platform.cpu[0]}-${platform.libc[0] === 'glibc' ? 'gnu' : 'musl'}`), name)
    assert.match(platform.main, /\.node$/)
    assert.ok(platform.files.includes('local-worker'), `${name} ships the supervisor: ${platform.files}`)
    assert.deepEqual(platform.bin, { 'local-worker': 'local-worker' })
  }
})
