use local_worker_core::decode::Utf8Decoder;
use local_worker_core::text::{Replacements, Text};
use std::time::Instant;

fn main() {
    let n = 64 << 20;
    let mut seed = 0x1234_5678_9abc_def0u64;
    let random: Vec<u8> = (0..n)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect();
    let line = "f00001 é漢😀 naïve 字幕 🎬 ·····\n";
    let utf8: Vec<u8> = line.as_bytes().iter().cycle().take(n).copied().collect();
    let ascii = vec![b'a'; n];
    for (name, data) in [("random", &random), ("utf8", &utf8), ("ascii", &ascii)] {
        for _ in 0..2 {
            let t = Instant::now();
            let mut d = Utf8Decoder::new();
            let mut text = Text::default();
            let mut r = Replacements::default();
            for chunk in data.chunks(1 << 20) {
                d.decode(chunk, &mut text, &mut r, 0);
            }
            d.finish(&mut text, &mut r, 0);
            let el = t.elapsed();
            println!(
                "{name}: {:.1} ms for {} MiB ({} units) -> {:.2} ns/byte",
                el.as_secs_f64() * 1e3,
                n >> 20,
                text.len(),
                el.as_nanos() as f64 / n as f64
            );
        }
    }
}
