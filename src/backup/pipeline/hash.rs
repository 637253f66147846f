//! The content hash of stored bytes, in whichever algorithm a MANIFEST entry
//! names: BLAKE3 for what cairn writes, SHA-256 for backups written before. One
//! type for both directions, so the backup side and the verifying side cannot
//! disagree on how a digest is spelled (lower-case hex of the 32 bytes).
//!
//! May call: [`crate::backup::manifest`] (the algorithm names).

use sha2::{Digest, Sha256};

use crate::backup::manifest::HashAlgorithm;

/// A running hash of stored bytes.
#[derive(Clone)]
pub(super) enum ContentHasher {
    /// SHA-256 (SHA extensions where the CPU has them).
    Sha256(Sha256),
    /// BLAKE3, single-threaded (SIMD across its chunks on large updates).
    Blake3(Box<blake3::Hasher>),
}

impl ContentHasher {
    /// A fresh hasher of `algorithm`.
    pub(super) fn new(algorithm: HashAlgorithm) -> Self {
        match algorithm {
            HashAlgorithm::Sha256 => ContentHasher::Sha256(Sha256::new()),
            HashAlgorithm::Blake3 => ContentHasher::Blake3(Box::new(blake3::Hasher::new())),
        }
    }

    /// Which algorithm this is.
    pub(super) fn algorithm(&self) -> HashAlgorithm {
        match self {
            ContentHasher::Sha256(_) => HashAlgorithm::Sha256,
            ContentHasher::Blake3(_) => HashAlgorithm::Blake3,
        }
    }

    /// Adds `bytes`.
    pub(super) fn update(&mut self, bytes: &[u8]) {
        match self {
            ContentHasher::Sha256(h) => h.update(bytes),
            ContentHasher::Blake3(h) => {
                h.update(bytes);
            }
        }
    }

    /// The digest of everything added, lower-case hex, and a fresh hasher of the
    /// same algorithm in its place.
    pub(super) fn finish_hex(&mut self) -> String {
        let fresh = ContentHasher::new(self.algorithm());
        match std::mem::replace(self, fresh) {
            ContentHasher::Sha256(h) => hex::encode(h.finalize()),
            ContentHasher::Blake3(h) => h.finalize().to_hex().to_string(),
        }
    }
}

/// Reads `src` to its end through a hash of `algorithm`: the bytes read and the
/// lower-case hex digest (what a MANIFEST entry records of a stored object).
pub fn digest_reader(
    src: &mut dyn std::io::Read,
    algorithm: HashAlgorithm,
) -> std::io::Result<(u64, String)> {
    let mut hasher = ContentHasher::new(algorithm);
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, hasher.finish_hex()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_the_standard_ones_whatever_the_update_sizes() {
        // (algorithm, input, hex digest as sha256sum / b3sum print it)
        let cases: [(HashAlgorithm, &[u8], &str); 4] = [
            (
                HashAlgorithm::Sha256,
                &b"abc"[..],
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                HashAlgorithm::Blake3,
                &b""[..],
                "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
            ),
            (
                HashAlgorithm::Blake3,
                &b"abc"[..],
                "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85",
            ),
            (
                HashAlgorithm::Sha256,
                &b""[..],
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
        ];
        for (algorithm, input, want) in cases {
            let mut h = ContentHasher::new(algorithm);
            h.update(input);
            assert_eq!(h.finish_hex(), want, "{algorithm}");
            // Finishing leaves a fresh hasher of the same algorithm.
            assert_eq!(h.algorithm(), algorithm);
            h.update(input);
            assert_eq!(h.finish_hex(), want, "{algorithm} after finish");
        }
        // Split updates give the one-shot digest (BLAKE3's tree spans chunks).
        let data: Vec<u8> = (0..3_000_017u32).map(|i| (i * 7 + i / 977) as u8).collect();
        let one_shot = blake3::hash(&data).to_hex().to_string();
        for step in [1usize, 1023, 1024, 65_536, 1 << 20] {
            let mut h = ContentHasher::new(HashAlgorithm::Blake3);
            data.chunks(step).for_each(|c| h.update(c));
            assert_eq!(h.finish_hex(), one_shot, "step {step}");
        }
    }
}
