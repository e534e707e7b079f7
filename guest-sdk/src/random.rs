//! Cryptographically secure random bytes from the host (`wasi:random/random`), for ids,
//! nonces and token ids. Natively (in `cargo test`) they come from the OS through std's
//! hasher seeds, which is enough for tests and never used in a plugin.

/// `n` random bytes.
pub fn bytes(n: usize) -> Vec<u8> {
    #[cfg(target_arch = "wasm32")]
    {
        wasip2::random::random::get_random_bytes(n as u64)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::hash::{BuildHasher, Hasher};
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_usize(out.len());
            out.extend_from_slice(&h.finish().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

/// `n` random bytes as lower-case hex (`2n` characters).
pub fn hex(n: usize) -> String {
    bytes(n).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn lengths_and_variety() {
        assert_eq!(super::bytes(33).len(), 33);
        assert_eq!(super::hex(16).len(), 32);
        assert_ne!(super::hex(16), super::hex(16));
    }
}
