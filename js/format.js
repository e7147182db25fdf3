'use strict'
// Text for error messages, written the way the native implementation (Rust) writes it, so
// that both implementations name fields and values identically.

/**
 * A number as Rust's `Display` for f64 prints it: no exponent, no trailing `.0`, `inf`/`NaN`.
 * e.g. 300 -> "300", 1.5 -> "1.5", 1e21 -> "1000000000000000000000", -1e-7 -> "-0.0000001".
 */
function formatNumber(n) {
  if (Number.isNaN(n)) return 'NaN'
  if (n === Infinity) return 'inf'
  if (n === -Infinity) return '-inf'
  if (Object.is(n, -0)) return '-0'
  const text = String(n)
  const e = text.indexOf('e')
  if (e === -1) return text
  const negative = text.startsWith('-')
  const mantissa = text.slice(negative ? 1 : 0, e)
  const exponent = Number(text.slice(e + 1))
  const [whole, fraction = ''] = mantissa.split('.')
  const digits = whole + fraction
  const point = whole.length + exponent
  let out
  if (point <= 0) out = `0.${'0'.repeat(-point)}${digits}`
  else if (point >= digits.length) out = digits + '0'.repeat(point - digits.length)
  else out = `${digits.slice(0, point)}.${digits.slice(point)}`
  return (negative ? '-' : '') + out
}

const NAMED_ESCAPES = { '\0': '\\0', '\t': '\\t', '\r': '\\r', '\n': '\\n', '\\': '\\\\', '"': '\\"' }
/** Characters Rust's `Debug` writes as `\u{..}`: controls, format characters, separators. */
const UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Co}\p{Cn}]/u

/**
 * A string quoted as Rust's `{:?}` quotes it (`"A\0B"`, `"a\u{1}"`), as the native field
 * names show env keys: `job.env["A=B"]`. Lone surrogates become U+FFFD, as they do when the
 * native implementation converts the key to UTF-8.
 */
function debugString(text) {
  let out = '"'
  for (const char of toWellFormed(text)) {
    if (Object.hasOwn(NAMED_ESCAPES, char)) out += NAMED_ESCAPES[char]
    else if (UNPRINTABLE.test(char)) out += `\\u{${char.codePointAt(0).toString(16)}}`
    else out += char
  }
  return `${out}"`
}

function toWellFormed(text) {
  if (typeof text.toWellFormed === 'function') return text.toWellFormed()
  return text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD')
}

/** `a number`, `an object`, `null`...: how a value's JS type is named in messages. */
function describeType(value) {
  if (value === null) return 'null'
  switch (typeof value) {
    case 'undefined': return 'undefined'
    case 'boolean': return 'a boolean'
    case 'number': return 'a number'
    case 'string': return 'a string'
    case 'symbol': return 'a symbol'
    case 'bigint': return 'a bigint'
    case 'function': return 'a function'
    default: return 'an object'
  }
}

module.exports = { formatNumber, debugString, describeType }
