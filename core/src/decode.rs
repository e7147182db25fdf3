//! UTF-8 decoding of a byte stream that arrives in arbitrary pieces, straight into the form
//! V8 stores strings in ([`Text`]: Latin-1 while it can, else UTF-16).
//!
//! Invalid input becomes U+FFFD exactly as the WHATWG decoder (V8's, hence
//! `Buffer#toString('utf8')`) replaces it: one per maximal subpart of an ill-formed
//! sequence. A character split across pieces is held back until the rest arrives, so the
//! concatenated output of any split equals the decoding of the whole stream.
//!
//! Hand-written rather than a library: besides the text, capture needs the length in the
//! stream of each replacement that did not come from one byte ([`Replacements`]), to cut
//! the kept tail at an exact stream position after the bytes are gone. The loop copies
//! runs of ASCII eight bytes at a time, and decodes the rest with one branch per byte.

use crate::text::{Replacements, Text};

const REPLACEMENT: u32 = 0xFFFD;

/// A streaming UTF-8 decoder.
#[derive(Debug, Default)]
pub struct Utf8Decoder {
    /// Start of an incomplete character (at most 3 bytes).
    pending: Vec<u8>,
    /// `pending` and the next input joined, when a character straddles two pieces.
    joined: Vec<u8>,
}

impl Utf8Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes held back (the start of a character split across pieces).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Decodes `input` onto the end of `text`, widening it to UTF-16 when a character needs
    /// it. Replacements not from a single byte are recorded in `replacements`, at unit
    /// offsets counted from `origin` (a unit index of `text`).
    pub fn decode(
        &mut self,
        input: &[u8],
        text: &mut Text,
        replacements: &mut Replacements,
        origin: usize,
    ) {
        if self.pending.is_empty() {
            let used = decode_all(input, false, text, replacements, origin);
            self.pending.extend_from_slice(&input[used..]);
            return;
        }
        let mut joined = std::mem::take(&mut self.joined);
        joined.clear();
        joined.append(&mut self.pending);
        joined.extend_from_slice(input);
        let used = decode_all(&joined, false, text, replacements, origin);
        self.pending.extend_from_slice(&joined[used..]);
        self.joined = joined;
    }

    /// Ends the stream: an incomplete trailing character becomes U+FFFD.
    pub fn finish(&mut self, text: &mut Text, replacements: &mut Replacements, origin: usize) {
        let pending = std::mem::take(&mut self.pending);
        decode_all(&pending, true, text, replacements, origin);
    }
}

/// Decodes `input` onto `text`; returns the bytes used: all, unless `!last` and the input
/// ends inside a character that may still be completed (≤ 3 bytes left over).
fn decode_all(
    input: &[u8],
    last: bool,
    text: &mut Text,
    replacements: &mut Replacements,
    origin: usize,
) -> usize {
    let mut used = 0;
    loop {
        let (n, stop) = match text {
            Text::Latin1(units) => decode_into(&input[used..], last, units, replacements, origin),
            Text::Utf16(units) => (
                decode_utf16(&input[used..], last, units, replacements, origin),
                Stop::End,
            ),
        };
        used += n;
        match stop {
            Stop::End => return used,
            Stop::Wider => text.widen(),
        }
    }
}

/// A unit of decoded text: `u8` (Latin-1) or `u16` (UTF-16).
trait Unit: Copy {
    /// Largest code point that fits in one unit, or a pair of them.
    const MAX: u32;
    fn from_u32(v: u32) -> Self;
    /// Writes `ascii` as units at `dst`.
    ///
    /// # Safety
    /// `dst` must be valid for `ascii.len()` writes.
    unsafe fn copy_ascii(ascii: &[u8], dst: *mut Self);
}

impl Unit for u8 {
    const MAX: u32 = 0xFF;
    fn from_u32(v: u32) -> Self {
        v as u8
    }
    unsafe fn copy_ascii(ascii: &[u8], dst: *mut Self) {
        // SAFETY: as the caller promises; a fresh output never overlaps the input.
        unsafe { std::ptr::copy_nonoverlapping(ascii.as_ptr(), dst, ascii.len()) };
    }
}

impl Unit for u16 {
    const MAX: u32 = 0x10FFFF;
    fn from_u32(v: u32) -> Self {
        v as u16
    }
    unsafe fn copy_ascii(ascii: &[u8], dst: *mut Self) {
        // SAFETY: as the caller promises.
        let dst = unsafe { std::slice::from_raw_parts_mut(dst, ascii.len()) };
        for (d, &a) in dst.iter_mut().zip(ascii) {
            *d = a as u16;
        }
    }
}

/// Length of the ASCII prefix of `bytes`, 32 bytes at a time where it can.
pub fn ascii_prefix(bytes: &[u8]) -> usize {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let n = bytes.len();
    let mut i = 0;
    while i + 32 <= n {
        if (word(i) | word(i + 8) | word(i + 16) | word(i + 24)) & HIGH != 0 {
            break;
        }
        i += 32;
    }
    while i + 8 <= n && word(i) & HIGH == 0 {
        i += 8;
    }
    while i < n && bytes[i] < 0x80 {
        i += 1;
    }
    i
}

enum Stop {
    /// The input is used up (but for a held-back incomplete character).
    End,
    /// A character does not fit the unit: widen and go on from the returned position.
    Wider,
}

/// The core loop: decodes `input` onto `out` until it ends or a character does not fit.
fn decode_into<U: Unit>(
    input: &[u8],
    last: bool,
    out: &mut Vec<U>,
    replacements: &mut Replacements,
    origin: usize,
) -> (usize, Stop) {
    // Every character takes at least as many bytes as it gives units.
    out.reserve(input.len());
    let base = out.len();
    let dst = out.spare_capacity_mut().as_mut_ptr().cast::<U>();
    let n = input.len();
    let mut i = 0;
    let mut w = 0;
    let mut stop = Stop::End;
    // Writes one unit. SAFETY (of every use): `w` < the reserved `input.len()` units, since
    // each unit written consumes at least one byte of `input` (a pair consumes four).
    macro_rules! put {
        ($v:expr) => {{
            unsafe { dst.add(w).write(U::from_u32($v)) };
            w += 1;
        }};
    }
    // A replacement for an ill-formed subpart of `$len` bytes.
    macro_rules! replace {
        ($len:expr) => {{
            if U::MAX < REPLACEMENT {
                stop = Stop::Wider;
                break;
            }
            if $len > 1 {
                replacements.push(base + w - origin, $len);
            }
            put!(REPLACEMENT);
            i += $len;
            continue;
        }};
    }
    while i < n {
        let b = input[i];
        if b < 0x80 {
            let run = ascii_prefix(&input[i..]);
            // SAFETY: `run` units fit, as every unit written does (see `put!`).
            unsafe { U::copy_ascii(&input[i..i + run], dst.add(w)) };
            i += run;
            w += run;
            continue;
        }
        // Number of continuation bytes and bounds of the second byte, per lead byte.
        let more = LEAD[b as usize] as usize;
        if more == 0 {
            replace!(1);
        }
        let (lo, hi) = SECOND[b as usize];
        // How many bytes of the sequence are present and well-formed so far.
        let (good, cp) = well_formed(input, i, lo, hi, more);
        if good <= more {
            if i + good == n && !last {
                // Incomplete at the end of this piece: wait for the rest.
                break;
            }
            replace!(good);
        }
        if cp > U::MAX {
            stop = Stop::Wider;
            break;
        }
        if cp >= 0x10000 {
            let v = cp - 0x10000;
            put!(0xD800 | (v >> 10));
            put!(0xDC00 | (v & 0x3FF));
        } else {
            if cp == REPLACEMENT {
                // A valid EF BF BD: three bytes for this U+FFFD.
                replacements.push(base + w - origin, 3);
            }
            put!(cp);
        }
        i += good;
    }
    // SAFETY: the first `w` spare units were written above.
    unsafe { out.set_len(base + w) };
    (i, stop)
}

/// How many bytes of the sequence that `input[at]` leads (`more` continuation bytes, the
/// second within `lo..=hi`) are present and well-formed, from 1 to `more + 1`, and the
/// code point they make so far.
#[inline(always)]
fn well_formed(input: &[u8], at: usize, lo: u8, hi: u8, more: usize) -> (usize, u32) {
    let mut good = 1;
    let mut cp = (input[at] as u32) & (0x3F >> more);
    while good <= more {
        let Some(&c) = input.get(at + good) else {
            break;
        };
        let (min, max) = if good == 1 { (lo, hi) } else { (0x80, 0xBF) };
        if c < min || c > max {
            break;
        }
        cp = (cp << 6) | (c as u32 & 0x3F);
        good += 1;
    }
    (good, cp)
}

/// What a byte is, when it starts a character: 0 for a byte that is a character (or a
/// replacement) by itself, else the number of continuation bytes it needs.
const LEAD: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0xC2;
    while b <= 0xF4 {
        table[b] = if b <= 0xDF {
            1
        } else if b <= 0xEF {
            2
        } else {
            3
        };
        b += 1;
    }
    table
};

/// Bounds of the second byte of a sequence, per lead byte (the first byte's own
/// exclusions: overlong forms, surrogates, code points above U+10FFFF).
const SECOND: [(u8, u8); 256] = {
    let mut table = [(0x80u8, 0xBFu8); 256];
    table[0xE0] = (0xA0, 0xBF);
    table[0xED] = (0x80, 0x9F);
    table[0xF0] = (0x90, 0xBF);
    table[0xF4] = (0x80, 0x8F);
    table
};

/// The unit of a byte that is a character by itself: itself (ASCII), or U+FFFD (a byte
/// that cannot start a character: a stray continuation byte, C0, C1, F5..FF).
const SINGLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = if b < 0x80 {
            b as u16
        } else {
            REPLACEMENT as u16
        };
        b += 1;
    }
    table
};

/// The UTF-16 loop, tuned for input dense in invalid bytes (binary output), where a
/// branch on "is it ASCII" is a coin flip: a byte that is a unit by itself (ASCII, or a
/// byte that can only be replaced) goes through one table lookup; ASCII runs are copied
/// eight bytes at a time. Same results as `decode_into`.
fn decode_utf16(
    input: &[u8],
    last: bool,
    out: &mut Vec<u16>,
    replacements: &mut Replacements,
    origin: usize,
) -> usize {
    out.reserve(input.len());
    let base = out.len();
    let dst = out.spare_capacity_mut().as_mut_ptr().cast::<u16>();
    let n = input.len();
    let mut i = 0;
    let mut w = 0;
    // SAFETY (of every write): `w` < the reserved `input.len()` units, since each unit
    // written consumes at least one byte of `input` (a pair consumes four).
    while i < n {
        if i + 8 <= n {
            let word = u64::from_le_bytes(input[i..i + 8].try_into().unwrap());
            if word & 0x8080_8080_8080_8080 == 0 {
                let run = 8 + ascii_prefix(&input[i + 8..]);
                unsafe { u16::copy_ascii(&input[i..i + run], dst.add(w)) };
                i += run;
                w += run;
                continue;
            }
        }
        let b = input[i];
        let more = LEAD[b as usize] as usize;
        if more == 0 {
            unsafe { dst.add(w).write(SINGLE[b as usize]) };
            i += 1;
            w += 1;
            continue;
        }
        let (lo, hi) = SECOND[b as usize];
        if i + 4 <= n {
            // The whole sequence is within reach: decide with straight-line checks.
            let b1 = input[i + 1];
            if b1 < lo || b1 > hi {
                unsafe { dst.add(w).write(REPLACEMENT as u16) };
                i += 1;
                w += 1;
                continue;
            }
            if more == 1 {
                let cp = ((b as u32 & 0x1F) << 6) | (b1 as u32 & 0x3F);
                unsafe { dst.add(w).write(cp as u16) };
                i += 2;
                w += 1;
                continue;
            }
            let b2 = input[i + 2];
            if b2 & 0xC0 != 0x80 {
                replacements.push(base + w - origin, 2);
                unsafe { dst.add(w).write(REPLACEMENT as u16) };
                i += 2;
                w += 1;
                continue;
            }
            if more == 2 {
                let cp = ((b as u32 & 0x0F) << 12) | ((b1 as u32 & 0x3F) << 6) | (b2 as u32 & 0x3F);
                if cp == REPLACEMENT {
                    // A valid EF BF BD: three bytes for this U+FFFD.
                    replacements.push(base + w - origin, 3);
                }
                unsafe { dst.add(w).write(cp as u16) };
                i += 3;
                w += 1;
                continue;
            }
            let b3 = input[i + 3];
            if b3 & 0xC0 != 0x80 {
                replacements.push(base + w - origin, 3);
                unsafe { dst.add(w).write(REPLACEMENT as u16) };
                i += 3;
                w += 1;
                continue;
            }
            let v = (((b as u32 & 0x07) << 18)
                | ((b1 as u32 & 0x3F) << 12)
                | ((b2 as u32 & 0x3F) << 6)
                | (b3 as u32 & 0x3F))
                - 0x10000;
            unsafe { dst.add(w).write((0xD800 | (v >> 10)) as u16) };
            unsafe { dst.add(w + 1).write((0xDC00 | (v & 0x3FF)) as u16) };
            i += 4;
            w += 2;
            continue;
        }
        // The last bytes of the input: the general loop, which may hold a sequence back.
        let (good, cp) = well_formed(input, i, lo, hi, more);
        if good <= more {
            if i + good == n && !last {
                // Incomplete at the end of this piece: wait for the rest.
                break;
            }
            if good > 1 {
                replacements.push(base + w - origin, good);
            }
            unsafe { dst.add(w).write(REPLACEMENT as u16) };
            w += 1;
            i += good;
            continue;
        }
        if cp >= 0x10000 {
            let v = cp - 0x10000;
            unsafe { dst.add(w).write((0xD800 | (v >> 10)) as u16) };
            unsafe { dst.add(w + 1).write((0xDC00 | (v & 0x3FF)) as u16) };
            w += 2;
        } else {
            if cp == REPLACEMENT {
                // A valid EF BF BD: three bytes for this U+FFFD.
                replacements.push(base + w - origin, 3);
            }
            unsafe { dst.add(w).write(cp as u16) };
            w += 1;
        }
        i += good;
    }
    // SAFETY: the first `w` spare units were written above.
    unsafe { out.set_len(base + w) };
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::skip_bytes;

    fn decode_in_pieces(bytes: &[u8], cuts: &[usize]) -> (Text, Replacements) {
        let mut decoder = Utf8Decoder::new();
        let mut text = Text::default();
        let mut replacements = Replacements::default();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            let cut = cut.clamp(start, bytes.len());
            decoder.decode(&bytes[start..cut], &mut text, &mut replacements, 0);
            start = cut;
        }
        decoder.finish(&mut text, &mut replacements, 0);
        (text, replacements)
    }

    fn decoded(bytes: &[u8], cuts: &[usize]) -> String {
        decode_in_pieces(bytes, cuts).0.to_string_from(0)
    }

    #[test]
    fn joins_a_character_split_across_pieces() {
        let bytes = "é€😀".as_bytes();
        for cut in 0..=bytes.len() {
            assert_eq!(decoded(bytes, &[cut]), "é€😀", "cut at {cut}");
        }
        assert_eq!(decoded(bytes, &[1, 2, 3, 4, 5, 6, 7, 8]), "é€😀");
    }

    #[test]
    fn stays_latin1_while_it_can() {
        let (text, _) = decode_in_pieces("café naïve".as_bytes(), &[4]);
        assert_eq!(text, Text::Latin1(b"caf\xe9 na\xefve".to_vec()));
        let (text, _) = decode_in_pieces("café 漢".as_bytes(), &[]);
        assert!(matches!(text, Text::Utf16(_)));
        assert_eq!(text.to_string_from(0), "café 漢");
    }

    /// A deterministic pseudo-random mix of valid, truncated and invalid sequences.
    fn samples(count: usize) -> Vec<(Vec<u8>, Vec<usize>)> {
        let mut seed = 0x2545_f491_u32;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        let alphabet: [&[u8]; 14] = [
            b"a",
            b"abcdefghij",
            "é".as_bytes(),
            "€".as_bytes(),
            "😀".as_bytes(),
            "\u{fffd}".as_bytes(),
            &[0xff],
            &[0xe2, 0x82],
            &[0x80],
            &[0xf0, 0x9f],
            &[0xf0, 0x9f, 0x98],
            &[0xc0, 0xaf],
            &[0xed, 0xa0, 0x80],
            &[0xf4, 0x90, 0x80, 0x80],
        ];
        (0..count)
            .map(|_| {
                let bytes: Vec<u8> = (0..(next() % 24))
                    .flat_map(|_| alphabet[(next() % 14) as usize].to_vec())
                    .collect();
                let mut cuts: Vec<usize> = (0..(next() % 5))
                    .map(|_| (next() as usize) % (bytes.len() + 1))
                    .collect();
                cuts.sort();
                (bytes, cuts)
            })
            .collect()
    }

    #[test]
    fn matches_lossy_decoding_of_the_whole_for_any_split() {
        // Rust's lossy decoding follows the same maximal-subpart rule as WHATWG.
        for (bytes, cuts) in samples(5000) {
            assert_eq!(
                decoded(&bytes, &cuts),
                String::from_utf8_lossy(&bytes),
                "{bytes:?} {cuts:?}"
            );
        }
    }

    #[test]
    fn replacements_give_every_character_its_stream_position() {
        // Skipping k bytes lands on the first character boundary at or after k, which is
        // where lossy decoding of the whole, split at that boundary, resumes.
        for (bytes, cuts) in samples(2000) {
            let (text, replacements) = decode_in_pieces(&bytes, &cuts);
            for k in 0..=bytes.len() as u64 {
                let (units, skipped) = skip_bytes(&text, 0, &replacements, k);
                assert!(skipped >= k || skipped == bytes.len() as u64);
                let head = String::from_utf8_lossy(&bytes[..skipped as usize]);
                let tail = String::from_utf8_lossy(&bytes[skipped as usize..]);
                assert_eq!(
                    format!("{head}{tail}"),
                    String::from_utf8_lossy(&bytes),
                    "{bytes:?} skip {k}: {skipped} is not a boundary"
                );
                assert_eq!(text.to_string_from(units), tail, "{bytes:?} skip {k}");
            }
        }
    }

    #[test]
    fn truncated_tail_becomes_one_replacement_character() {
        let mut decoder = Utf8Decoder::new();
        let mut text = Text::default();
        let mut replacements = Replacements::default();
        decoder.decode(&[b'a', 0xe2, 0x82], &mut text, &mut replacements, 0);
        assert_eq!(text.to_string_from(0), "a");
        assert_eq!(decoder.pending(), 2);
        decoder.finish(&mut text, &mut replacements, 0);
        assert_eq!(text.to_string_from(0), "a\u{fffd}");
        assert_eq!(replacements.0, vec![1 << 2 | 2]);
    }
}
