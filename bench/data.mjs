// Input files of the benchmark, written once per `npm run bench` (never committed).
//
// bench/run.mjs creates a temporary directory, passes it to every measurement process in
// LW_BENCH_DATA and removes it at the end; a measurement run on its own (`node
// bench/scenario.mjs ...`) makes its own directory and removes it at exit. A file is written
// the first time a scenario asks for it, then reused by every later measurement.

import { randomFillSync } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';

export const MiB = 1024 * 1024;
/** The largest input any scenario reads; smaller ones are read with `head -c`. */
export const DATA_BYTES = 256 * MiB;

let dir = process.env.LW_BENCH_DATA;
if (!dir) {
  dir = mkdtempSync(join(tmpdir(), 'lw-bench-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
}

/**
 * A line of 64 bytes of valid UTF-8 that mixes 2-, 3- and 4-byte characters with ASCII, as
 * render tools print them (file names, subtitles, localised messages): é, 漢, emoji.
 */
function utf8Line(i) {
  const head = `f${String(i % 100000).padStart(5, '0')} é漢😀 naïve 字幕 🎬 `;
  const line = head + '·'.repeat(40);
  // Trim to 63 bytes on a character boundary, pad with ASCII, end with a newline.
  let out = '';
  for (const ch of line) {
    if (Buffer.byteLength(out + ch) > 63) break;
    out += ch;
  }
  return out + '-'.repeat(63 - Buffer.byteLength(out)) + '\n';
}

const KINDS = {
  /** Valid UTF-8: 64-byte lines, so every size used (8, 16, 128, 256 MiB) ends on a line. */
  utf8(buffer) {
    const block = Buffer.from(Array.from({ length: 1024 }, (_, i) => utf8Line(i)).join(''));
    if (block.length !== 64 * 1024) throw new Error(`utf8 block is ${block.length} bytes`);
    for (let at = 0; at < buffer.length; at += block.length) block.copy(buffer, at);
  },
  /** Random bytes: binary output such as raw video frames; mostly invalid as UTF-8. */
  random(buffer) {
    randomFillSync(buffer);
  },
};

/** Path of the `kind` file (DATA_BYTES long), written now if it is not there yet. */
export function dataFile(kind) {
  const path = join(dir, `${kind}.bin`);
  if (existsSync(path)) return path;
  const partial = `${path}.${process.pid}.tmp`;
  const fd = openSync(partial, 'w');
  const chunk = Buffer.allocUnsafe(16 * MiB);
  for (let written = 0; written < DATA_BYTES; written += chunk.length) {
    KINDS[kind](chunk);
    writeSync(fd, chunk);
  }
  closeSync(fd);
  renameSync(partial, path); // atomic: a concurrent reader never sees half a file
  return path;
}

/**
 * Calls `each(text)` with the first `bytes` bytes of `path` decoded as one UTF-8 stream
 * (exactly `Buffer.concat(all).toString('utf8')`, in pieces), reading 1 MiB at a time.
 */
export function decodeFile(path, bytes, each) {
  const fd = openSync(path, 'r');
  const decoder = new StringDecoder('utf8');
  const chunk = Buffer.allocUnsafe(MiB);
  try {
    for (let done = 0; done < bytes;) {
      const n = readSync(fd, chunk, 0, Math.min(chunk.length, bytes - done), done);
      if (n === 0) throw new Error(`${path} is shorter than ${bytes} bytes`);
      done += n;
      each(decoder.write(chunk.subarray(0, n)));
    }
    each(decoder.end());
  } finally {
    closeSync(fd);
  }
}

/** The first `bytes` bytes of `path` decoded as UTF-8, as one string. */
export function decodedFile(path, bytes) {
  const parts = [];
  decodeFile(path, bytes, (text) => parts.push(text));
  return parts.join('');
}

/**
 * Compares `text` with the first `bytes` bytes of `path` decoded as UTF-8, without holding
 * the expected text whole. Returns null when equal, else what differs.
 */
export function compareDecoded(text, path, bytes) {
  if (typeof text !== 'string') return `not a string but ${typeof text}`;
  let at = 0;
  let problem = null;
  decodeFile(path, bytes, (piece) => {
    if (problem !== null || piece.length === 0) return;
    if (text.slice(at, at + piece.length) !== piece) {
      let i = 0;
      while (i < piece.length && text.charCodeAt(at + i) === piece.charCodeAt(i)) i++;
      problem = `differs at character ${at + i}`;
    }
    at += piece.length;
  });
  if (problem === null && at !== text.length) problem = `${text.length} characters, expected ${at}`;
  return problem;
}

/** Compares `bytes` (a Buffer or Uint8Array) with the first `length` bytes of `path`. */
export function compareBytes(bytes, path, length) {
  if (!(bytes instanceof Uint8Array)) return `not bytes but ${typeof bytes}`;
  if (bytes.length !== length) return `${bytes.length} bytes, expected ${length}`;
  const fd = openSync(path, 'r');
  const chunk = Buffer.allocUnsafe(MiB);
  try {
    for (let at = 0; at < length;) {
      const n = readSync(fd, chunk, 0, Math.min(chunk.length, length - at), at);
      if (Buffer.compare(chunk.subarray(0, n), bytes.subarray(at, at + n)) !== 0) return `differs within bytes ${at}..${at + n}`;
      at += n;
    }
  } finally {
    closeSync(fd);
  }
  return null;
}

/** Number of U+FFFD in `text` (to describe a corrupted baseline result). */
export function replacements(text) {
  let n = 0;
  for (let i = text.indexOf('\uFFFD'); i !== -1; i = text.indexOf('\uFFFD', i + 1)) n++;
  return n;
}
