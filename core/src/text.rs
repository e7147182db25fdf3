//! Text in the two forms V8 stores strings in: Latin-1 (one byte per character) while every
//! character is at most U+00FF, UTF-16 otherwise.
//!
//! Output is decoded into one of these on the reading threads ([`crate::decode`]), so that
//! the JS thread only hands a finished buffer to V8 (an external string, or a plain copy)
//! instead of decoding UTF-8 itself.

/// Largest piece handed to a callback, in bytes of UTF-8: the size of a pipe chunk, so a
/// callback sees what it would see from a Node stream, and V8 keeps each piece in its
/// young generation (below its large-object threshold).
pub const PIECE_MAX_UTF8: usize = 64 * 1024;

/// Decoded text: Latin-1 while every character fits in a byte, else UTF-16.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Text {
    Latin1(Vec<u8>),
    Utf16(Vec<u16>),
}

impl Default for Text {
    fn default() -> Self {
        Text::Latin1(Vec::new())
    }
}

impl Text {
    /// Length in code units (V8's string length).
    pub fn len(&self) -> usize {
        match self {
            Text::Latin1(units) => units.len(),
            Text::Utf16(units) => units.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the units occupy (what V8 holds for it).
    pub fn byte_len(&self) -> usize {
        match self {
            Text::Latin1(units) => units.len(),
            Text::Utf16(units) => units.len() * 2,
        }
    }

    /// Turns Latin-1 text into UTF-16 (no-op when it already is).
    pub fn widen(&mut self) {
        if let Text::Latin1(units) = self {
            // Reserve as much as the Latin-1 buffer had: text keeps growing.
            let mut wide = Vec::with_capacity(units.capacity().max(units.len()));
            wide.extend(units.iter().map(|&u| u as u16));
            *self = Text::Utf16(wide);
        }
    }

    /// Appends `units[from..]` of `other`, widening `self` if `other` is UTF-16.
    pub fn extend_from(&mut self, other: &Text) {
        if let Text::Utf16(_) = other {
            self.widen();
        }
        match (self, other) {
            (Text::Latin1(dst), Text::Latin1(src)) => dst.extend_from_slice(src),
            (Text::Utf16(dst), Text::Latin1(src)) => dst.extend(src.iter().map(|&u| u as u16)),
            (Text::Utf16(dst), Text::Utf16(src)) => dst.extend_from_slice(src),
            (Text::Latin1(_), Text::Utf16(_)) => unreachable!("widened above"),
        }
    }

    /// Removes the first `n` units.
    pub fn drain_front(&mut self, n: usize) {
        match self {
            Text::Latin1(units) => drop(units.drain(..n)),
            Text::Utf16(units) => drop(units.drain(..n)),
        }
    }

    /// The text as a Rust string (lone surrogates cannot occur: decoding never makes them).
    pub fn to_string_from(&self, start: usize) -> String {
        match self {
            Text::Latin1(units) => units[start..].iter().map(|&u| u as char).collect(),
            Text::Utf16(units) => String::from_utf16_lossy(&units[start..]),
        }
    }

    /// Unit offsets where the pieces of at most `max_utf8` bytes of UTF-8 end, cut between
    /// characters (never inside a surrogate pair). The last offset is `len()`; none for an
    /// empty text.
    pub fn piece_ends(&self, max_utf8: usize) -> Vec<usize> {
        let mut ends = Vec::new();
        let len = self.len();
        let mut start = 0;
        while start < len {
            let end = match self {
                Text::Latin1(units) => latin1_piece_end(&units[start..], max_utf8),
                Text::Utf16(units) => utf16_piece_end(&units[start..], max_utf8),
            };
            start += end;
            ends.push(start);
        }
        ends
    }
}

/// Units of the longest prefix of `units` whose UTF-8 length is at most `max` (at least one
/// character).
fn latin1_piece_end(units: &[u8], max: usize) -> usize {
    // Every Latin-1 character is one or two bytes of UTF-8.
    if units.len() <= max / 2 {
        return units.len();
    }
    // The common case, ASCII: as many units as bytes.
    let ascii = crate::decode::ascii_prefix(&units[..units.len().min(max)]);
    if ascii == units.len().min(max) {
        return ascii;
    }
    let mut bytes = 0;
    for (i, &u) in units.iter().enumerate() {
        bytes += 1 + (u >> 7) as usize;
        if bytes > max {
            return i.max(1);
        }
    }
    units.len()
}

fn utf16_piece_end(units: &[u16], max: usize) -> usize {
    // Every UTF-16 unit is at most three bytes of UTF-8 (a surrogate pair is four for two).
    if units.len() <= max / 3 {
        return units.len();
    }
    // Counted as 1, 2 or 3 bytes by value, a surrogate as 3: a pair counts 6 for its 4,
    // so a piece with emoji may end a little early, never late. Blocks are summed in a
    // loop the compiler vectorises; the block that crosses the limit is walked.
    let size = |u: u16| 1 + (u >= 0x80) as usize + (u >= 0x800) as usize;
    let mut bytes = 0;
    let mut i = 0;
    while i < units.len() {
        let block = &units[i..units.len().min(i + 256)];
        let sum: usize = block.iter().map(|&u| size(u)).sum();
        if bytes + sum > max {
            break;
        }
        bytes += sum;
        i += block.len();
    }
    while i < units.len() && bytes + size(units[i]) <= max {
        bytes += size(units[i]);
        i += 1;
    }
    // Never between the two halves of a pair.
    if i < units.len() && (0xD800..=0xDBFF).contains(&units[i - 1]) {
        i -= 1;
    }
    i.max(1)
}

/// Where the replacement characters of a run of decoded text came from when that was not a
/// single byte: 2 or 3 bytes of an invalid sequence, or a valid EF BF BD. Every other
/// character's length in the stream follows from the character itself, so with this the
/// stream position of any character can be recovered without keeping the bytes.
///
/// Each entry is `(unit offset in the run) << 2 | byte length`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replacements(pub(crate) Vec<u32>);

impl Replacements {
    pub(crate) fn push(&mut self, offset: usize, len: usize) {
        debug_assert!(offset < 1 << 30 && (2..=3).contains(&len));
        self.0.push(((offset as u32) << 2) | len as u32);
    }

    pub(crate) fn append_shifted(&mut self, other: &Replacements, shift: usize) {
        self.0
            .extend(other.0.iter().map(|&e| e + ((shift as u32) << 2)));
    }
}

/// Units of `text[from..]` to skip to reach the first character that starts `raw` bytes or
/// more into the stream after `from`, with the bytes actually skipped (≥ `raw`, unless the
/// text ends first). `replacements` describes `text[from..]` (offsets relative to `from`).
pub fn skip_bytes(text: &Text, from: usize, replacements: &Replacements, raw: u64) -> (usize, u64) {
    let mut special = replacements
        .0
        .iter()
        .map(|&e| ((e >> 2) as usize, (e & 3) as u64));
    let mut next_special = special.next();
    let mut skipped = 0u64;
    let mut unit = 0usize;
    match text {
        Text::Latin1(units) => {
            let units = &units[from..];
            while skipped < raw && unit < units.len() {
                skipped += 1 + (units[unit] >> 7) as u64;
                unit += 1;
            }
        }
        Text::Utf16(units) => {
            let units = &units[from..];
            while skipped < raw && unit < units.len() {
                let (size, width) = match units[unit] {
                    0..=0x7F => (1, 1),
                    0x80..=0x7FF => (2, 1),
                    0xD800..=0xDBFF => (4, 2),
                    0xFFFD => match next_special {
                        Some((at, len)) if at == unit => {
                            next_special = special.next();
                            (len, 1)
                        }
                        _ => (1, 1),
                    },
                    _ => (3, 1),
                };
                skipped += size;
                unit += width;
            }
        }
    }
    (unit, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16(s: &str) -> Text {
        Text::Utf16(s.encode_utf16().collect())
    }
    #[test]
    fn pieces_stay_within_the_utf8_limit_and_never_split_a_pair() {
        let units: Vec<u16> = "a😀é漢".repeat(1000).encode_utf16().collect();
        let text = Text::Utf16(units.clone());
        let mut start = 0;
        for end in text.piece_ends(10) {
            let piece = String::from_utf16(&units[start..end]).expect("whole characters");
            assert!(piece.len() <= 10 && !piece.is_empty(), "{piece:?}");
            start = end;
        }
        assert_eq!(start, text.len());
        let latin = Text::Latin1(vec![0xE9; 25]);
        assert_eq!(latin.piece_ends(10), vec![5, 10, 15, 20, 25]);
        assert!(Text::default().piece_ends(10).is_empty());
    }

    #[test]
    fn widening_and_appending_keep_the_characters() {
        let mut text = Text::Latin1(b"caf\xe9 ".to_vec());
        text.extend_from(&Text::Latin1(b"ok".to_vec()));
        assert!(matches!(text, Text::Latin1(_)));
        text.extend_from(&utf16("漢"));
        assert_eq!(text.to_string_from(0), "café ok漢");
        text.drain_front(5);
        assert_eq!(text.to_string_from(0), "ok漢");
    }

    #[test]
    fn skipping_bytes_counts_each_character_by_its_source() {
        // "é" 2 bytes, "😀" 4, U+FFFD from a 3-byte invalid sequence, U+FFFD from 1 byte.
        let text = utf16("é😀\u{fffd}\u{fffd}a");
        let mut replacements = Replacements::default();
        replacements.push(3, 3);
        assert_eq!(skip_bytes(&text, 0, &replacements, 1), (1, 2));
        assert_eq!(skip_bytes(&text, 0, &replacements, 3), (3, 6));
        assert_eq!(skip_bytes(&text, 0, &replacements, 7), (4, 9));
        assert_eq!(skip_bytes(&text, 0, &replacements, 10), (5, 10));
        assert_eq!(skip_bytes(&text, 0, &replacements, 99), (6, 11));
    }
}
