'use strict'
// Reading a WorkerJob (and the adapter's options), naming the field at fault.
//
// The same rules, order and messages as the native implementation (src/input.rs and
// core/src/spec.rs): every field is read once, in a fixed order (a throwing getter rejects
// with what it threw), then the values are checked. `null` counts as absent.

const path = require('node:path')
const { inputError } = require('./errors.js')
const { formatNumber, debugString, describeType } = require('./format.js')

/** Longest accepted duration, as for Node's timers (about 24.8 days). */
const MAX_MS = 2147483647
/** V8's longest string is 2^29 - 24 UTF-16 units; a UTF-8 byte count never undercounts them. */
const MAX_BUFFER_LIMIT = 2 ** 29 - 24

/** The built-in defaults of the options a job may override. */
const DEFAULTS = Object.freeze({
  maxBuffer: 100 * 1024 * 1024,
  killGracePeriod: 5000,
  drainTimeout: 200,
  killLeftovers: true,
  encoding: 'utf8',
})
/** What `encoding` may be: text decoded as UTF-8, or the raw bytes in Buffers. */
const ENCODINGS = ['utf8', 'buffer']

/** The properties of one JS object, read with field-naming errors. */
class Fields {
  constructor(target, prefix) {
    this.target = target
    this.prefix = prefix
  }

  /** `null` when optional and absent (`undefined`/`null`). */
  static of(value, prefix, optional) {
    if (typeof value === 'object' && value !== null) {
      if (Array.isArray(value)) throw inputError('type', prefix, 'must be an object, not an array')
      return new Fields(value, prefix)
    }
    if (optional && value == null) return null
    throw inputError('type', prefix, `must be an object (got ${describeType(value)})`)
  }

  path(name) {
    return `${this.prefix}.${name}`
  }

  /** The property, or `undefined` when it is `undefined` or `null`. */
  get(name) {
    const value = this.target[name]
    return value == null ? undefined : value
  }

  /** The property when its JS type is `type`; `undefined` when absent. */
  typed(name, type, what) {
    const value = this.get(name)
    if (value === undefined || typeof value === type) return value
    throw expected(this.path(name), what, value)
  }

  string(name) {
    return this.typed(name, 'string', 'a string')
  }

  number(name) {
    return this.typed(name, 'number', 'a number')
  }

  boolean(name) {
    return this.typed(name, 'boolean', 'a boolean')
  }

  listener(name) {
    return this.typed(name, 'function', 'a function')
  }

  stringArray(name) {
    const path = this.path(name)
    const value = this.get(name)
    if (value === undefined) return []
    if (typeof value !== 'object' || !Array.isArray(value)) throw expected(path, 'an array of strings', value)
    const length = value.length
    const items = new Array(length)
    for (let i = 0; i < length; i++) {
      const item = value[i]
      if (typeof item !== 'string') throw expected(`${path}[${i}]`, 'a string', item)
      items[i] = item
    }
    return items
  }

  /** Own enumerable string keys; `undefined` values are skipped (as Node does). */
  stringMap(name) {
    const path = this.path(name)
    const value = this.get(name)
    if (value === undefined) return []
    if (typeof value !== 'object' || Array.isArray(value)) throw expected(path, 'an object of strings', value)
    const pairs = []
    for (const key of Object.keys(value)) {
      const item = value[key]
      // undefined removes the variable, as `{ ...process.env, ...job.env }` did.
      if (item === undefined) {
        pairs.push([key, undefined])
        continue
      }
      if (typeof item !== 'string') throw expected(`${path}[${debugString(key)}]`, 'a string', item)
      pairs.push([key, item])
    }
    return pairs
  }

  /** A finite, non-negative number of milliseconds. */
  millis(name) {
    const ms = this.number(name)
    if (ms === undefined) return undefined
    if (!(ms >= 0 && ms <= MAX_MS)) {
      throw inputError('range', this.path(name),
        `must be a finite number of milliseconds from 0 to ${MAX_MS} (got ${formatNumber(ms)})`)
    }
    return ms
  }

  object(name, problem) {
    const value = this.get(name)
    if (value === undefined || (typeof value === 'object')) return value
    throw inputError('type', this.path(name), `${problem} (got ${describeType(value)})`)
  }

  /** Options shared by the adapter's constructor and each job. */
  tuning(defaults) {
    let maxBuffer = this.number('maxBuffer')
    if (maxBuffer === undefined) {
      maxBuffer = defaults.maxBuffer
    } else if (!(Number.isInteger(maxBuffer) && maxBuffer >= 0 && maxBuffer <= MAX_BUFFER_LIMIT)) {
      throw inputError('range', this.path('maxBuffer'),
        `must be a whole number of bytes from 0 to ${MAX_BUFFER_LIMIT}, V8's longest string (got ${formatNumber(maxBuffer)})`)
    }
    const encoding = this.typed('encoding', 'string', "'utf8' or 'buffer'") ?? defaults.encoding
    if (!ENCODINGS.includes(encoding)) {
      throw inputError('value', this.path('encoding'), `must be 'utf8' or 'buffer' (got ${debugString(encoding)})`)
    }
    const killGracePeriod = this.millis('killGracePeriod') ?? defaults.killGracePeriod
    const drainTimeout = this.millis('drainTimeout') ?? defaults.drainTimeout
    const killLeftovers = this.boolean('killLeftovers') ?? defaults.killLeftovers
    return { maxBuffer: maxBuffer + 0, encoding, killGracePeriod, drainTimeout, killLeftovers }
  }
}

function expected(path, what, got) {
  return inputError('type', path, `must be ${what} (got ${describeType(got)})`)
}

/** The adapter's defaults from the constructor's `options` (optional). Throws when malformed. */
function readOptions(options) {
  const fields = Fields.of(options, 'options', true)
  return Object.freeze(fields === null ? { ...DEFAULTS } : fields.tuning(DEFAULTS))
}

/**
 * The job as a plain spec: `{ command, args, env: [[key, value]...], cwd, timeout, maxBuffer, encoding,
 * killGracePeriod, drainTimeout, killLeftovers, onStdout, onStderr, signal }`. `timeout` is
 * undefined for no limit. Throws the TypeError/RangeError to reject with (or what a getter threw).
 */
function readJob(job, defaults) {
  const fields = Fields.of(job, 'job', false)
  const command = fields.string('command')
  if (command === undefined) throw inputError('type', 'job.command', 'must be a non-empty string')
  const args = fields.stringArray('args')
  const env = fields.stringMap('env')
  const cwd = fields.string('cwd')
  // `timeout: 0` means no limit, as for the TypeScript adapter; any positive one is a limit.
  const ms = fields.millis('timeout')
  const timeout = ms !== undefined && ms > 0 ? ms : undefined
  const tuning = fields.tuning(defaults)
  // `meta` is accepted and ignored: it is not even read.
  const onStdout = fields.listener('onStdout')
  const onStderr = fields.listener('onStderr')
  const signal = fields.object('signal', 'must be an AbortSignal')
  const spec = { command, args, env, cwd, timeout, ...tuning, onStdout, onStderr, signal }
  checkValues(spec)
  // The state at the time of the call (a spawn may wait for its turn, see pace.js): the
  // environment the job will get, and a relative cwd made absolute.
  spec.environment = environment(env)
  if (cwd !== undefined) spec.cwd = path.resolve(cwd)
  return spec
}

/** The job's `env` laid over the inherited environment; an undefined value removes a variable. */
function environment(pairs) {
  const env = { ...process.env }
  for (const [key, value] of pairs) {
    if (process.platform === 'win32') {
      // Windows variable names are case-insensitive: the job's spelling replaces the inherited one.
      for (const inherited of Object.keys(env)) {
        if (inherited.toUpperCase() === key.toUpperCase()) delete env[inherited]
      }
    }
    if (value === undefined) delete env[key]
    else env[key] = value
  }
  return env
}

/** What the type checks cannot see: strings the OS would truncate or misread. */
function checkValues(spec) {
  if (spec.command === '') throw inputError('value', 'job.command', 'must be a non-empty string')
  noNul('job.command', spec.command)
  spec.args.forEach((arg, i) => noNul(`job.args[${i}]`, arg))
  for (const [key, value] of spec.env) {
    const field = `job.env[${debugString(key)}]`
    if (key === '') throw inputError('value', 'job.env', 'keys must be non-empty')
    if (key.includes('=')) throw inputError('value', field, "key must not contain '='")
    noNul(field, key)
    if (value !== undefined) noNul(field, value)
  }
  if (spec.cwd !== undefined) {
    if (spec.cwd === '') throw inputError('value', 'job.cwd', 'must be a non-empty string')
    noNul('job.cwd', spec.cwd)
  }
}

function noNul(field, value) {
  if (value.includes('\0')) throw inputError('value', field, 'must not contain a NUL byte')
}

module.exports = { readOptions, readJob, DEFAULTS, MAX_BUFFER_LIMIT, MAX_MS }
