//! Property tests: no input, however malformed, makes the runtime panic or emit a bad action.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use keel_runtime::encode::{encode, PolicySpec};
use keel_runtime::Policy;
use proptest::prelude::*;

fn valid_blob() -> Vec<u8> {
    encode(&PolicySpec::example(3, &[8, 8], 1, 5)).unwrap()
}

/// Acting on anything that loads must give a finite, in-bounds action or an error.
fn exercise(bytes: &[u8], obs: &[f32]) {
    if let Ok(p) = Policy::<'_, 16>::from_bytes(bytes) {
        let mut a = vec![0.0f32; p.act_dim()];
        if p.act(obs, &mut a).is_ok() {
            for (i, v) in a.iter().enumerate() {
                let (lo, hi) = p.action_bounds(i).unwrap();
                assert!(v.is_finite() && *v >= lo && *v <= hi);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        exercise(&bytes, &[0.1, 0.2, 0.3]);
    }

    /// Structured garbage: a valid blob with random edits and the CRC fixed up, so the edits reach
    /// the header parser and the shape/finiteness checks instead of stopping at the checksum.
    #[test]
    fn edited_blobs_with_fixed_crc_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        obs in proptest::collection::vec(any::<f32>(), 3),
    ) {
        let blob = valid_blob();
        let mut body = blob[..blob.len() - 4].to_vec();
        for (i, v) in &edits {
            let i = i.index(body.len());
            body[i] = *v;
        }
        let keep = 6 + cut.index(body.len() - 5);
        body.truncate(keep);
        let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        exercise(&body, &obs);
    }

    #[test]
    fn any_observation_gives_bounded_action_or_error(obs in proptest::collection::vec(any::<f32>(), 0..5)) {
        let blob = valid_blob();
        exercise(&blob, &obs);
    }
}
