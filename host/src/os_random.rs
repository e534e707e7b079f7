//! Random bytes for session ids, codes, data keys and nonces, from the OS CSPRNG.
//!
//! Every create and resend needs fresh random bytes in four places (the next single-use
//! id, the code, the cookie's data key and its nonce), a wrong-code verify in three (no
//! code). Asking the kernel each time costs a `getrandom` system call apiece, a visible share of a
//! request's CPU time. Instead each thread keeps a small buffer filled by one
//! `getrandom` call and hands its bytes out in order, each byte exactly once: the
//! bytes are still the kernel CSPRNG's output, only fetched in batches. A handed-out
//! byte is wiped from the buffer at once, and the buffer is wiped when its thread
//! ends, so no random material outlives its use in this module.
//!
//! Long-lived secrets (key-encryption keys) do not come from here; they are drawn from
//! the OS directly.

use rand::rngs::OsRng;
use rand::RngCore;
use std::cell::RefCell;
use zeroize::Zeroize;

/// Bytes fetched per `getrandom` call: enough for several requests.
const BATCH: usize = 1024;

struct Batch {
    bytes: [u8; BATCH],
    /// Bytes before this index have been handed out (and wiped).
    used: usize,
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

thread_local! {
    static BATCH_OF_THIS_THREAD: RefCell<Batch> = const {
        RefCell::new(Batch { bytes: [0; BATCH], used: BATCH })
    };
}

/// Fills `dest` with uniformly random bytes from the OS CSPRNG.
pub fn fill(dest: &mut [u8]) {
    if dest.len() > BATCH / 4 {
        // Large requests are rare; they would drain the batch for little gain.
        OsRng.fill_bytes(dest);
        return;
    }
    BATCH_OF_THIS_THREAD.with(|cell| {
        let Ok(mut batch) = cell.try_borrow_mut() else {
            // Only reachable if `fill` were re-entered on this thread; stay correct.
            OsRng.fill_bytes(dest);
            return;
        };
        let mut written = 0;
        while written < dest.len() {
            if batch.used == BATCH {
                OsRng.fill_bytes(&mut batch.bytes);
                batch.used = 0;
            }
            let take = (dest.len() - written).min(BATCH - batch.used);
            let start = batch.used;
            let source = &mut batch.bytes[start..start + take];
            dest[written..written + take].copy_from_slice(source);
            source.zeroize();
            batch.used += take;
            written += take;
        }
    });
}

/// A fresh random id: 16 bytes in hex (request ids, audit event ids).
pub fn hex_id() -> String {
    let mut bytes = [0u8; 16];
    fill(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn bytes_are_never_handed_out_twice() {
        // 16-byte draws across several refills: any repeat would mean a reused byte
        // range (the chance of a genuine 128-bit collision is negligible).
        let mut seen = HashSet::new();
        for _ in 0..(4 * BATCH / 16) {
            let mut id = [0u8; 16];
            fill(&mut id);
            assert!(seen.insert(id), "a random id repeated");
        }
    }

    #[test]
    fn draws_straddling_a_refill_are_filled_completely() {
        // 7 does not divide BATCH, so some draw spans the end of one batch and the
        // start of the next; none may come back with an all-zero tail.
        let mut zero_tails = 0;
        for _ in 0..(3 * BATCH / 7) {
            let mut bytes = [0u8; 7];
            fill(&mut bytes);
            if bytes[4..] == [0, 0, 0] {
                zero_tails += 1;
            }
        }
        // Three zero bytes by chance: 1 in 16.7 M per draw.
        assert!(zero_tails <= 1, "{zero_tails} draws had a zero tail");
    }

    #[test]
    fn large_and_empty_requests_work() {
        let mut big = [0u8; 4096];
        fill(&mut big);
        assert!(big.iter().any(|&b| b != 0));
        fill(&mut []);
    }

    #[test]
    fn bytes_look_uniform() {
        // A coarse check that the batching does not skew the distribution: over
        // 256 KiB every byte value should appear close to 1,024 times.
        let mut counts = [0u32; 256];
        for _ in 0..(256 * 1024 / 32) {
            let mut chunk = [0u8; 32];
            fill(&mut chunk);
            for b in chunk {
                counts[usize::from(b)] += 1;
            }
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*min > 850 && *max < 1200, "byte counts range {min}..{max}");
    }
}
