'use strict'
// Capturing one output stream: a bounded tail of its bytes for the result, and its text (or
// bytes, for `encoding: 'buffer'`), as it arrives, for the job's callback.
//
// - The tail keeps the most recent `maxBuffer` bytes (older ones are dropped and counted). As
//   text, the result is the characters of the whole stream's decoding that start in those
//   bytes (a few bytes before them are kept to tell); as bytes, exactly those bytes. Small
//   pipe reads are merged into larger blocks so that a chatty child does not pin one Buffer
//   object per write.
// - Callbacks get UTF-8 decoded safely across reads (StringDecoder holds a split character
//   back), with invalid bytes replaced exactly as `Buffer#toString('utf8')` replaces them, in
//   pieces of at most 64 KiB of UTF-8 cut at character boundaries; or, for 'buffer', the
//   stream's chunks as they come. A callback that throws is not called again; the job is
//   told once.

const { StringDecoder } = require('node:string_decoder')

const { stringError } = require('./errors.js')

/** Largest piece handed to a callback, in UTF-8 bytes. */
const PIECE_MAX = 64 * 1024
/** Small reads are merged into blocks of about this size. */
const BLOCK = 256 * 1024
/** ... or once this many small reads are pending. */
const MAX_PENDING = 64

/** Bytes kept before the last `max` ones for text: enough to tell where a character starts. */
const CONTEXT = 3

/** The most recent `max` bytes of a stream, and how many bytes before them were dropped. */
class TailBuffer {
  /** `text`: the result is decoded, and must start on a character of the whole stream. */
  constructor(max, text = true) {
    this.max = max
    this.context = text ? CONTEXT : 0
    /** Blocks kept, oldest first, from `head` on. */
    this.blocks = []
    this.head = 0
    /** Bytes in blocks[head..] plus pending. */
    this.length = 0
    this.pending = []
    this.pendingBytes = 0
    this.dropped = 0
  }

  push(chunk) {
    if (this.max === 0) {
      this.dropped += chunk.length
      return
    }
    this.length += chunk.length
    this.pending.push(chunk)
    this.pendingBytes += chunk.length
    if (this.pendingBytes >= BLOCK || this.pending.length >= MAX_PENDING) this.flush()
    this.trim()
  }

  flush() {
    if (this.pending.length === 0) return
    const block = this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending, this.pendingBytes)
    this.blocks.push(block)
    this.pending = []
    this.pendingBytes = 0
  }

  /** Drops whole blocks that lie entirely before the last `max` bytes (and their context). */
  trim() {
    while (this.head < this.blocks.length && this.length - this.blocks[this.head].length >= this.max + this.context) {
      const block = this.blocks[this.head]
      this.blocks[this.head++] = undefined
      this.length -= block.length
      this.dropped += block.length
    }
    if (this.head > 1024 && this.head * 2 > this.blocks.length) {
      this.blocks = this.blocks.slice(this.head)
      this.head = 0
    }
  }

  /**
   * `{ bytes, dropped }`: the last `max` bytes; as text, from the first of them that starts a
   * character of the whole stream (bytes of a character that began earlier are dropped too).
   */
  finish() {
    this.flush()
    const keep = Math.min(this.length, this.max + this.context)
    const skip = this.length - keep
    const bytes = Buffer.allocUnsafe(keep)
    let toSkip = skip
    let offset = 0
    for (let i = this.head; i < this.blocks.length; i++) {
      const block = this.blocks[i]
      if (toSkip >= block.length) {
        toSkip -= block.length
        continue
      }
      offset += block.copy(bytes, offset, toSkip)
      toSkip = 0
    }
    this.blocks = []
    this.head = 0
    this.dropped += skip
    // `bytes` holds the last `max` bytes after `cut` context bytes (all of the stream's start
    // when there are fewer than CONTEXT).
    const cut = keep - Math.min(keep, this.max)
    const start = this.context > 0 ? characterStart(bytes, cut) : cut
    this.dropped += start
    return { bytes: bytes.subarray(start), dropped: this.dropped }
  }
}

/**
 * The first position at or after `at` where the UTF-8 decoding of `bytes` starts a character
 * (or a replacement): WHATWG decoding resynchronises on any byte that is not a continuation
 * byte, so looking back at most 3 bytes tells. `bytes` before `at` are the stream's own.
 */
function characterStart(bytes, at) {
  let lead = -1
  for (let k = at - 1; k >= Math.max(0, at - CONTEXT); k--) {
    if ((bytes[k] & 0xc0) !== 0x80) {
      lead = k
      break
    }
  }
  // Only continuation bytes before: each one is a replacement on its own, or ends a
  // character that started before them.
  if (lead < 0) return at
  const end = lead + subpartLength(bytes, lead)
  return end > at ? end : at
}

/** Bytes of the character (or of the ill-formed sequence replaced by one U+FFFD) at `i`. */
function subpartLength(bytes, i) {
  const b = bytes[i]
  let more
  let lo = 0x80
  let hi = 0xbf
  if (b >= 0xc2 && b <= 0xdf) more = 1
  else if (b >= 0xe0 && b <= 0xef) {
    more = 2
    if (b === 0xe0) lo = 0xa0
    else if (b === 0xed) hi = 0x9f
  } else if (b >= 0xf0 && b <= 0xf4) {
    more = 3
    if (b === 0xf0) lo = 0x90
    else if (b === 0xf4) hi = 0x8f
  } else return 1
  let good = 1
  while (good <= more && i + good < bytes.length) {
    const c = bytes[i + good]
    if (c < (good === 1 ? lo : 0x80) || c > (good === 1 ? hi : 0xbf)) break
    good++
  }
  return good
}

/** `text` cut into pieces of at most PIECE_MAX UTF-8 bytes, at character boundaries. */
function pieces(text) {
  // Every UTF-16 unit is at most 3 bytes of UTF-8.
  if (text.length * 3 <= PIECE_MAX || Buffer.byteLength(text) <= PIECE_MAX) return [text]
  const out = []
  let start = 0
  let bytes = 0
  for (let i = 0; i < text.length;) {
    const unit = text.charCodeAt(i)
    let size = 3
    let units = 1
    if (unit < 0x80) size = 1
    else if (unit < 0x800) size = 2
    else if (unit >= 0xd800 && unit <= 0xdbff && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      size = 4
      units = 2
    }
    if (bytes + size > PIECE_MAX) {
      out.push(text.slice(start, i))
      start = i
      bytes = 0
    }
    bytes += size
    i += units
  }
  out.push(text.slice(start))
  return out
}

/** Above this, text is decoded in parts: V8 takes at most 2^29 - 24 bytes of UTF-8 at once. */
const DECODE_PART = 64 * 1024 * 1024

/** `bytes` decoded as UTF-8, as `toString` would, for any length a string can hold. */
function decode(bytes) {
  if (bytes.length <= DECODE_PART) return bytes.toString('utf8')
  const decoder = new StringDecoder('utf8')
  let text = ''
  for (let at = 0; at < bytes.length; at += DECODE_PART) text += decoder.write(bytes.subarray(at, at + DECODE_PART))
  return text + decoder.end()
}

/** One stream of a job: what is kept for the result, and what its callback sees. */
class OutputCapture {
  /**
   * @param name 'onStdout' or 'onStderr', for the callback error's message
   * @param listener the user's callback, or undefined
   * @param onFailure called once, with `{ callback, thrown }`, if the callback throws
   */
  constructor(maxBuffer, encoding, name, listener, onFailure) {
    this.bytes = encoding === 'buffer'
    this.tail = new TailBuffer(maxBuffer, !this.bytes)
    this.name = name
    this.listener = listener
    this.onFailure = onFailure
    this.decoder = listener === undefined || this.bytes ? null : new StringDecoder('utf8')
    this.ended = false
  }

  write(chunk) {
    if (this.ended) return
    this.tail.push(chunk)
    if (this.listener === undefined) return
    if (this.bytes) {
      this.call(chunk)
      return
    }
    const text = this.decoder.write(chunk)
    if (text.length > 0) this.deliver(text)
  }

  /** The stream ended (or is no longer read): a trailing partial character becomes U+FFFD. */
  end() {
    if (this.ended) return
    this.ended = true
    if (this.listener !== undefined && this.decoder !== null) {
      const text = this.decoder.end()
      if (text.length > 0) this.deliver(text)
    }
    this.decoder = null
  }

  deliver(text) {
    for (const piece of pieces(text)) this.call(piece)
  }

  /** Calls the listener with one piece, unless it has failed before. */
  call(piece) {
    const listener = this.listener
    if (listener === undefined) return
    try {
      listener.call(undefined, piece)
    } catch (thrown) {
      this.listener = undefined
      this.onFailure({ callback: this.name, thrown })
    }
  }

  /**
   * `{ text, dropped }` for the result (`text` is a Buffer for 'buffer'); throws the Error to
   * reject with if no string can hold it.
   */
  result() {
    const { bytes, dropped } = this.tail.finish()
    if (this.bytes) return { text: bytes, dropped }
    let text
    try {
      text = decode(bytes)
    } catch (error) {
      throw stringError(bytes.length, error)
    }
    return { text, dropped }
  }
}

module.exports = { OutputCapture, TailBuffer, characterStart, pieces, PIECE_MAX }
