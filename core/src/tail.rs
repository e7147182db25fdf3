//! What is kept of a stream for the result: its last `max_buffer` bytes at most, as bytes
//! or as decoded text, and how many bytes before them were dropped.
//!
//! Text is decoded as it arrives ([`TextTail`]), so the bytes are not kept next to their
//! decoded copy: memory is the decoded text only, and the result is ready when the stream
//! ends. The limit is on the stream's bytes all the same: the text is kept as segments
//! that know how many stream bytes they decoded, and where their replacement characters
//! came from ([`Replacements`]), so the cut at the end is exact without the bytes.

use std::collections::VecDeque;

use crate::decode::{Utf8Decoder, ascii_prefix};
use crate::text::{Replacements, Text, skip_bytes};

/// Old bytes are removed in batches of at least this much (or half the limit), so that
/// each byte is moved a bounded number of times.
const MIN_SLACK: usize = 1024 * 1024;
/// A segment smaller than this takes the next piece of text too: a chatty stream does not
/// make one segment per write.
const SEGMENT_MIN: u64 = 64 * 1024;

/// What was kept of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// Decoded text from unit `start` on (the units before it were cut off).
    Text { text: Text, start: usize },
    /// Raw bytes from `start` on.
    Bytes { bytes: Vec<u8>, start: usize },
}

/// A stream's kept part: its last `max_buffer` bytes at most (as text: the characters that
/// start in them) and how many bytes before them were dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedOutput {
    pub kept: Kept,
    pub dropped: u64,
}

impl Default for CapturedOutput {
    fn default() -> Self {
        CapturedOutput {
            kept: Kept::Text {
                text: Text::default(),
                start: 0,
            },
            dropped: 0,
        }
    }
}

impl CapturedOutput {
    /// The kept part as a Rust string (bytes are decoded, invalid UTF-8 replaced).
    pub fn into_text(self) -> String {
        match self.kept {
            Kept::Text { text, start } => text.to_string_from(start),
            Kept::Bytes { bytes, start } => String::from_utf8_lossy(&bytes[start..]).into_owned(),
        }
    }

    /// The kept bytes (text re-encoded as UTF-8).
    pub fn into_bytes(self) -> Vec<u8> {
        match self.kept {
            Kept::Bytes { mut bytes, start } => {
                bytes.drain(..start);
                bytes
            }
            Kept::Text { .. } => self.into_text().into_bytes(),
        }
    }
}

/// The most recent `max` bytes, raw. Old bytes are cut in batches; memory stays below
/// 1.5 x `max` + one read.
#[derive(Debug)]
pub struct ByteTail {
    pub(crate) buf: Vec<u8>,
    max: usize,
    dropped: u64,
}

impl ByteTail {
    pub fn new(max: usize) -> Self {
        ByteTail {
            buf: Vec::new(),
            max,
            dropped: 0,
        }
    }

    pub fn trim_excess(&mut self) {
        let slack = (self.max / 2).max(MIN_SLACK);
        if self.buf.len() > self.max + slack {
            let n = self.buf.len() - self.max;
            self.buf.drain(..n);
            self.dropped += n as u64;
        }
    }

    /// Exactly the last `max` bytes (binary data has no character boundaries to respect).
    pub fn finish(self) -> CapturedOutput {
        let start = self.buf.len().saturating_sub(self.max);
        CapturedOutput {
            kept: Kept::Bytes {
                bytes: self.buf,
                start,
            },
            dropped: self.dropped + start as u64,
        }
    }
}

/// A run of decoded text: how many stream bytes it decoded, its units, and its replacement
/// characters that did not come from one byte.
#[derive(Debug, Default)]
struct Segment {
    raw: u64,
    units: usize,
    replacements: Replacements,
}

/// The most recent `max` bytes of a stream, kept decoded.
///
/// The text is one buffer (handed to V8 whole); `segments` describe its live part, after
/// `dead` units of dropped segments that are removed from the buffer in batches.
#[derive(Debug)]
pub struct TextTail {
    text: Text,
    dead: usize,
    segments: VecDeque<Segment>,
    /// Stream bytes decoded into the live segments.
    kept: u64,
    max: usize,
    dropped: u64,
    decoder: Utf8Decoder,
}

impl TextTail {
    pub fn new(max: usize) -> Self {
        TextTail {
            text: Text::default(),
            dead: 0,
            segments: VecDeque::new(),
            kept: 0,
            max,
            dropped: 0,
            decoder: Utf8Decoder::new(),
        }
    }

    /// Makes sure the last segment takes more text; returns the unit index where it starts.
    fn open_segment(&mut self) -> usize {
        if self
            .segments
            .back()
            .is_none_or(|last| last.raw >= SEGMENT_MIN)
        {
            self.segments.push_back(Segment::default());
        }
        let last = self.segments.back().expect("just ensured");
        self.text.len() - last.units
    }

    /// Decodes the next bytes of the stream onto the text.
    pub fn decode(&mut self, input: &[u8]) {
        let before = self.decoder.pending() as u64;
        let start = self.open_segment();
        let segment = self.segments.back_mut().expect("an open segment");
        self.decoder
            .decode(input, &mut self.text, &mut segment.replacements, start);
        let raw = before + input.len() as u64 - self.decoder.pending() as u64;
        segment.raw += raw;
        segment.units = self.text.len() - start;
        self.kept += raw;
        self.trim_excess();
    }

    /// Where the stream's next bytes may be read in place: the end of the text while it is
    /// Latin-1 with nothing held back. Call [`TextTail::accept_in_place`] after reading.
    pub fn in_place_target(&mut self) -> Option<&mut Vec<u8>> {
        match &mut self.text {
            Text::Latin1(units) if self.decoder.pending() == 0 => Some(units),
            _ => None,
        }
    }

    /// `n` raw bytes were appended to the in-place target: ASCII is already its own
    /// Latin-1 text; anything else is taken back and decoded (via `scratch`).
    pub fn accept_in_place(&mut self, n: usize, scratch: &mut Vec<u8>) {
        let Text::Latin1(units) = &mut self.text else {
            unreachable!("in-place reads only go to Latin-1 text")
        };
        let new_from = units.len() - n;
        let ascii = ascii_prefix(&units[new_from..]);
        // The ASCII prefix stays where it is.
        if ascii > 0 {
            self.open_segment();
            let segment = self.segments.back_mut().expect("an open segment");
            segment.raw += ascii as u64;
            segment.units += ascii;
            self.kept += ascii as u64;
        }
        if ascii < n {
            let Text::Latin1(units) = &mut self.text else {
                unreachable!()
            };
            scratch.clear();
            scratch.extend_from_slice(&units[new_from + ascii..]);
            units.truncate(new_from + ascii);
            let rest = std::mem::take(scratch);
            self.decode(&rest);
            *scratch = rest;
        } else {
            self.trim_excess();
        }
    }

    /// Appends text decoded elsewhere from the next `raw` bytes of the stream (with its
    /// replacements, offsets from its start).
    pub fn append(&mut self, text: &Text, replacements: &Replacements, raw: u64) {
        self.open_segment();
        let segment = self.segments.back_mut().expect("an open segment");
        segment
            .replacements
            .append_shifted(replacements, segment.units);
        segment.raw += raw;
        segment.units += text.len();
        self.text.extend_from(text);
        self.kept += raw;
        self.trim_excess();
    }

    /// Drops the segments that lie wholly before the last `max` bytes decoded so far, and
    /// removes their units from the buffer once there are enough of them.
    fn trim_excess(&mut self) {
        while let Some(front) = self.segments.front() {
            if self.kept - front.raw < self.max as u64 || self.segments.len() == 1 {
                break;
            }
            let front = self.segments.pop_front().expect("a front segment");
            self.kept -= front.raw;
            self.dropped += front.raw;
            self.dead += front.units;
        }
        let slack = (self.max / 2).max(MIN_SLACK);
        if self.dead > slack {
            self.text.drain_front(self.dead);
            self.dead = 0;
        }
    }

    /// The text of the last `max` bytes: the characters that start in them, as decoding the
    /// whole stream would give them (an incomplete character at the end becomes U+FFFD).
    pub fn finish(mut self) -> CapturedOutput {
        let before = self.decoder.pending() as u64;
        if before > 0 {
            let start = self.open_segment();
            let segment = self.segments.back_mut().expect("an open segment");
            self.decoder
                .finish(&mut self.text, &mut segment.replacements, start);
            segment.raw += before;
            segment.units = self.text.len() - start;
            self.kept += before;
        }
        // Whole segments before the cut go; the one it falls in is walked.
        let mut cut = self.kept.saturating_sub(self.max as u64);
        while let Some(front) = self.segments.front() {
            if front.raw > cut {
                break;
            }
            let front = self.segments.pop_front().expect("a front segment");
            cut -= front.raw;
            self.dropped += front.raw;
            self.dead += front.units;
        }
        if cut > 0
            && let Some(front) = self.segments.front()
        {
            let (units, skipped) = skip_bytes(&self.text, self.dead, &front.replacements, cut);
            self.dead += units;
            self.dropped += skipped;
        }
        CapturedOutput {
            kept: Kept::Text {
                text: self.text,
                start: self.dead,
            },
            dropped: self.dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_tail_keeps_exactly_the_last_bytes() {
        let mut tail = ByteTail::new(4);
        tail.buf.extend_from_slice("abcdé€".as_bytes());
        let out = tail.finish();
        assert_eq!(out.dropped, 5);
        assert_eq!(out.into_bytes(), &"é€".as_bytes()[1..]);
    }

    #[test]
    fn byte_tail_trims_in_batches() {
        let mut tail = ByteTail::new(10);
        tail.buf.resize(MIN_SLACK + 11, b'x');
        tail.trim_excess();
        assert_eq!(tail.buf.len(), 10);
        assert_eq!(tail.dropped, MIN_SLACK as u64 + 1);
    }

    #[test]
    fn zero_max_keeps_nothing() {
        let mut tail = TextTail::new(0);
        tail.decode(b"abc");
        let out = tail.finish();
        assert_eq!((out.dropped, out.into_text()), (3, String::new()));
        let mut tail = ByteTail::new(0);
        tail.buf.extend_from_slice(b"abc");
        let out = tail.finish();
        assert_eq!((out.dropped, out.into_bytes()), (3, vec![]));
    }

    #[test]
    fn text_tail_starts_on_the_first_character_in_the_kept_bytes() {
        let mut tail = TextTail::new(4);
        tail.decode("xé€".as_bytes()); // 1 + 2 + 3 bytes
        let out = tail.finish();
        // The last 4 bytes begin with é's second byte: é is not kept, nor counted as kept.
        assert_eq!(out.dropped, 3);
        assert_eq!(out.into_text(), "€");
    }

    /// The reference: the characters of the whole stream's decoding that start in the last
    /// `max` bytes, and the bytes before the first of them.
    fn expected_tail(bytes: &[u8], max: usize) -> (u64, String) {
        let cut = bytes.len().saturating_sub(max);
        // The first boundary at or after `cut`: where decoding the prefix ends cleanly.
        let whole = String::from_utf8_lossy(bytes);
        (cut..=bytes.len())
            .find(|&at| {
                let head = String::from_utf8_lossy(&bytes[..at]);
                whole.starts_with(head.as_ref())
                    && String::from_utf8_lossy(&bytes[at..]) == whole[head.len()..]
            })
            .map(|at| {
                (
                    at as u64,
                    String::from_utf8_lossy(&bytes[at..]).into_owned(),
                )
            })
            .expect("the end is a boundary")
    }

    #[test]
    fn text_tail_is_exact_for_any_stream_split_and_limit() {
        let mut seed = 0x9e37_79b9_u32;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        let alphabet: [&[u8]; 9] = [
            b"ab",
            "é".as_bytes(),
            "漢".as_bytes(),
            "😀".as_bytes(),
            &[0xff],
            &[0xe2, 0x82],
            &[0x80],
            &[0xf0, 0x9f, 0x98],
            "\u{fffd}".as_bytes(),
        ];
        for _ in 0..3000 {
            let bytes: Vec<u8> = (0..(next() % 40))
                .flat_map(|_| alphabet[(next() % 9) as usize].to_vec())
                .collect();
            let max = (next() as usize) % (bytes.len() + 2);
            let mut tail = TextTail::new(max);
            let mut at = 0;
            while at < bytes.len() {
                let n = 1 + (next() as usize) % 7;
                let end = (at + n).min(bytes.len());
                tail.decode(&bytes[at..end]);
                at = end;
            }
            let out = tail.finish();
            let got = (out.dropped, out.into_text());
            assert_eq!(got, expected_tail(&bytes, max), "{bytes:?} max {max}");
        }
    }

    #[test]
    fn trimming_while_running_keeps_memory_bounded_and_the_tail_exact() {
        let max = 3 * MIN_SLACK;
        let mut tail = TextTail::new(max);
        let line = "é漢😀 frame\n".as_bytes();
        let mut all = Vec::new();
        for _ in 0..(12 * MIN_SLACK / line.len()) {
            tail.decode(line);
            all.extend_from_slice(line);
            assert!(tail.text.len() <= max + max / 2 + 2 * SEGMENT_MIN as usize + line.len());
        }
        let out = tail.finish();
        let (dropped, text) = expected_tail(&all, max);
        assert_eq!(out.dropped, dropped);
        assert_eq!(out.into_text(), text);
    }

    #[test]
    fn ascii_read_in_place_needs_no_copy_and_non_ascii_is_decoded() {
        let mut tail = TextTail::new(100);
        let mut scratch = Vec::new();
        for chunk in [&b"plain "[..], "café ".as_bytes(), &[0xc3], &[0xa9, b'!']] {
            match tail.in_place_target() {
                Some(target) => {
                    target.extend_from_slice(chunk);
                    tail.accept_in_place(chunk.len(), &mut scratch);
                }
                None => tail.decode(chunk),
            }
        }
        let out = tail.finish();
        assert_eq!(out.into_text(), "plain café é!");
    }
}
