//! Trace and span ids: random, never all zero, and their hex form.

use ring::rand::{SecureRandom, SystemRandom};

pub type TraceId = [u8; 16];
pub type SpanId = [u8; 8];

fn random<const N: usize>() -> [u8; N] {
    let rng = SystemRandom::new();
    let mut bytes = [0u8; N];
    loop {
        // The system's generator does not fail on Linux; a zero id is invalid, so draw again.
        if rng.fill(&mut bytes).is_ok() && bytes.iter().any(|b| *b != 0) {
            return bytes;
        }
    }
}

pub fn new_trace_id() -> TraceId {
    random()
}

pub fn new_span_id() -> SpanId {
    random()
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Parses lowercase or uppercase hex of exactly `N` bytes.
pub fn from_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 {
        return None;
    }
    let mut bytes = [0u8; N];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(bytes)
}

/// A W3C `traceparent` value.
pub fn traceparent(trace_id: &TraceId, span_id: &SpanId, sampled: bool) -> String {
    format!(
        "00-{}-{}-{}",
        hex(trace_id),
        hex(span_id),
        if sampled { "01" } else { "00" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_and_round_trip_through_hex() {
        let a = new_trace_id();
        assert_ne!(a, new_trace_id());
        assert_eq!(from_hex::<16>(&hex(&a)), Some(a));
        assert_eq!(
            from_hex::<8>("00f067aa0ba902b7"),
            Some([0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7])
        );
        assert_eq!(from_hex::<8>("00f067aa0ba902b"), None);
        assert_eq!(from_hex::<8>("00f067aa0ba902bz"), None);
        assert_eq!(
            traceparent(&[0xab; 16], &[1; 8], true),
            "00-abababababababababababababababab-0101010101010101-01"
        );
    }
}
