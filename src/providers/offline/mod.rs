//! Providers that need no keys and no network: a deterministic script writer, footage
//! from a folder or generated with ffmpeg, and espeak-ng narration. With them every
//! recipe runs offline, in tests and in CI.

mod footage;
mod script;
mod voice;

pub use footage::{GeneratedFootage, LocalFootage};
pub use script::{OfflineWriter, TextWriter};
pub use script::{sentences, visual_query};
pub use voice::{Espeak, EspeakVoices, PAUSE_SECONDS as LINE_PAUSE_SECONDS};

use super::ProviderError;
use crate::media::MediaError;

/// Media failures here come from the inputs or the local tools, which trying again does
/// not fix.
fn permanent(service: &'static str) -> impl Fn(MediaError) -> ProviderError {
    move |error| ProviderError::permanent(service, error.to_string())
}

/// A fixed pseudo-random sequence (splitmix64). Written out rather than taken from a
/// library so that the same job keeps getting the same script and footage across
/// dependency upgrades.
#[derive(Clone)]
struct Sequence(u64);

impl Sequence {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`; `n` must be positive.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A number in `low..=high`, in steps of one hundredth.
    fn between(&mut self, low: f64, high: f64) -> f64 {
        let steps = ((high - low) * 100.0).round() as usize;
        low + self.below(steps + 1) as f64 / 100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_is_fixed_by_its_seed() {
        let first: Vec<u64> = {
            let mut seq = Sequence::new(7);
            (0..3).map(|_| seq.next()).collect()
        };
        let mut again = Sequence::new(7);
        assert_eq!(first, (0..3).map(|_| again.next()).collect::<Vec<_>>());
        let mut other = Sequence::new(8);
        assert_ne!(first[0], other.next());
        // The published first output of splitmix64 seeded with 0.
        assert_eq!(Sequence::new(0).next(), 0xE220_A839_7B1D_CDAF);
        let mut seq = Sequence::new(1);
        for _ in 0..100 {
            let value = seq.between(0.2, 0.5);
            assert!((0.2..=0.5).contains(&value), "{value}");
        }
    }
}
