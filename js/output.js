'use strict'
// Capturing one output stream: a bounded tail of its bytes for the result, and its text, as it
// arrives, for the job's callback.
//
// - The tail keeps the most recent `maxBuffer` bytes (older ones are dropped and counted); the
//   result's text starts on a character boundary. Small pipe reads are merged into larger
//   blocks so that a chatty child does not pin one Buffer object per write.
// - Callbacks get UTF-8 decoded safely across reads (StringDecoder holds a split character
//   back), with invalid bytes replaced exactly as `Buffer#toString('utf8')` replaces them, in
//   pieces of at most 64 KiB of UTF-8 cut at character boundaries. A callback that throws is
//   not called again; the job is told once.

const { StringDecoder } = require('node:string_decoder')

const { stringError } = require('./errors.js')

/** Largest piece handed to a callback, in UTF-8 bytes. */
const PIECE_MAX = 64 * 1024
/** Small reads are merged into blocks of about this size. */
const BLOCK = 256 * 1024
/** ... or once this many small reads are pending. */
const MAX_PENDING = 64

/** The most recent `max` bytes of a stream, and how many bytes before them were dropped. */
class TailBuffer {
  constructor(max) {
    this.max = max
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

  /** Drops whole blocks that lie entirely before the last `max` bytes. */
  trim() {
    while (this.head < this.blocks.length && this.length - this.blocks[this.head].length >= this.max) {
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

  /** `{ bytes, dropped }`: the kept tail, starting on a character boundary. */
  finish() {
    this.flush()
    const skip = Math.max(0, this.length - this.max)
    const bytes = Buffer.allocUnsafe(this.length - skip)
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
    // Do not start in the middle of a character (bytes were dropped before this one).
    let start = 0
    if (this.dropped > 0) {
      while (start < 3 && start < bytes.length && (bytes[start] & 0xc0) === 0x80) start++
      this.dropped += start
    }
    return { bytes: bytes.subarray(start), dropped: this.dropped }
  }
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

/** One stream of a job: what is kept for the result, and what its callback sees. */
class OutputCapture {
  /**
   * @param name 'onStdout' or 'onStderr', for the callback error's message
   * @param listener the user's callback, or undefined
   * @param onFailure called once, with `{ callback, thrown }`, if the callback throws
   */
  constructor(maxBuffer, name, listener, onFailure) {
    this.tail = new TailBuffer(maxBuffer)
    this.name = name
    this.listener = listener
    this.onFailure = onFailure
    this.decoder = listener === undefined ? null : new StringDecoder('utf8')
    this.ended = false
  }

  write(chunk) {
    if (this.ended) return
    this.tail.push(chunk)
    if (this.listener !== undefined) {
      const text = this.decoder.write(chunk)
      if (text.length > 0) this.deliver(text)
    }
  }

  /** The stream ended (or is no longer read): a trailing partial character becomes U+FFFD. */
  end() {
    if (this.ended) return
    this.ended = true
    if (this.listener !== undefined) {
      const text = this.decoder.end()
      if (text.length > 0) this.deliver(text)
    }
    this.decoder = null
  }

  deliver(text) {
    for (const piece of pieces(text)) {
      const listener = this.listener
      if (listener === undefined) return
      try {
        listener.call(undefined, piece)
      } catch (thrown) {
        this.listener = undefined
        this.onFailure({ callback: this.name, thrown })
      }
    }
  }

  /** `{ text, dropped }` for the result; throws the Error to reject with if no string can hold it. */
  result() {
    const { bytes, dropped } = this.tail.finish()
    let text
    try {
      text = bytes.toString('utf8')
    } catch (error) {
      throw stringError(bytes.length, error)
    }
    return { text, dropped }
  }
}

module.exports = { OutputCapture, TailBuffer, pieces, PIECE_MAX }
