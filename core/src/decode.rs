//! UTF-8 decoding of a byte stream that arrives in arbitrary pieces.

/// Decodes pieces of a stream, holding back a character split across pieces until
/// the rest arrives. Invalid bytes become U+FFFD exactly as `String::from_utf8_lossy`
/// would replace them in the whole stream, so the concatenated pieces equal the
/// lossy decoding of all the bytes.
#[derive(Debug, Default)]
pub struct Utf8StreamDecoder {
    /// Start of an incomplete character (at most 3 bytes).
    pending: Vec<u8>,
}

impl Utf8StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn decode(&mut self, input: &[u8]) -> String {
        let joined;
        let mut rest: &[u8] = if self.pending.is_empty() {
            input
        } else {
            joined = [std::mem::take(&mut self.pending).as_slice(), input].concat();
            &joined
        };
        let mut out = String::with_capacity(rest.len());
        loop {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    out.push_str(valid);
                    return out;
                }
                Err(err) => {
                    let (valid, after) = rest.split_at(err.valid_up_to());
                    // SAFETY: from_utf8 vouched for this prefix.
                    out.push_str(unsafe { std::str::from_utf8_unchecked(valid) });
                    match err.error_len() {
                        Some(len) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[len..];
                        }
                        None => {
                            // Truncated at the end: wait for the next piece.
                            self.pending.extend_from_slice(after);
                            return out;
                        }
                    }
                }
            }
        }
    }

    /// Ends the stream: an incomplete trailing character becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        let pending = std::mem::take(&mut self.pending);
        String::from_utf8_lossy(&pending).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(bytes: &[u8], cuts: &[usize]) -> String {
        let mut decoder = Utf8StreamDecoder::new();
        let mut out = String::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            let cut = cut.clamp(start, bytes.len());
            out.push_str(&decoder.decode(&bytes[start..cut]));
            start = cut;
        }
        out + &decoder.finish()
    }

    #[test]
    fn joins_a_character_split_across_pieces() {
        let bytes = "é€😀".as_bytes();
        for cut in 0..=bytes.len() {
            assert_eq!(decode_in_pieces(bytes, &[cut]), "é€😀", "cut at {cut}");
        }
        assert_eq!(decode_in_pieces(bytes, &[1, 2, 3, 4, 5, 6, 7, 8]), "é€😀");
    }

    #[test]
    fn matches_lossy_decoding_of_the_whole_for_any_split() {
        // A deterministic pseudo-random mix of valid, truncated and invalid sequences.
        let mut seed = 0x2545_f491_u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        let alphabet: [&[u8]; 9] = [
            b"a",
            "é".as_bytes(),
            "€".as_bytes(),
            "😀".as_bytes(),
            &[0xff],
            &[0xe2, 0x82],
            &[0x80],
            &[0xf0, 0x9f],
            &[0xc0, 0xaf],
        ];
        for _ in 0..2000 {
            let bytes: Vec<u8> = (0..(next() % 24))
                .flat_map(|_| alphabet[(next() % 9) as usize].to_vec())
                .collect();
            let mut cuts: Vec<usize> = (0..(next() % 5))
                .map(|_| (next() as usize) % (bytes.len() + 1))
                .collect();
            cuts.sort();
            assert_eq!(
                decode_in_pieces(&bytes, &cuts),
                String::from_utf8_lossy(&bytes),
                "{bytes:?} {cuts:?}"
            );
        }
    }

    #[test]
    fn truncated_tail_becomes_one_replacement_character() {
        let mut decoder = Utf8StreamDecoder::new();
        assert_eq!(decoder.decode(&[b'a', 0xe2, 0x82]), "a");
        assert_eq!(decoder.finish(), "\u{fffd}");
    }
}
