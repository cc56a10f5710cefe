//! Fuzz `Policy::from_bytes` + `act`: no input may panic, and any action produced must be finite
//! and inside the policy's bounds.
//!
//! Inputs are interpreted two ways: as a raw blob, and as edits applied to a valid blob whose CRC is
//! then fixed, so the fuzzer also reaches the header parser and the shape checks.
#![no_main]

use keel_runtime::encode::{encode, PolicySpec};
use keel_runtime::Policy;
use libfuzzer_sys::fuzz_target;

fn check(bytes: &[u8], obs_seed: &[u8]) {
    let Ok(p) = Policy::<'_, 32>::from_bytes(bytes) else {
        return;
    };
    let obs: Vec<f32> = (0..p.obs_dim())
        .map(|i| {
            let b = [0, 1, 2, 3].map(|k| obs_seed.get(4 * i + k).copied().unwrap_or(0));
            f32::from_le_bytes(b)
        })
        .collect();
    let mut act = vec![0.0f32; p.act_dim()];
    if p.act(&obs, &mut act).is_ok() {
        for (i, a) in act.iter().enumerate() {
            let (lo, hi) = p.action_bounds(i).unwrap();
            assert!(a.is_finite() && *a >= lo && *a <= hi, "bad action {a}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data, data);
    // Structured: edit a valid blob at positions chosen by the input, fix the CRC.
    let blob = encode(&PolicySpec::example(3, &[8, 8], 1, 1)).unwrap();
    let mut body = blob[..blob.len() - 4].to_vec();
    for pair in data.chunks_exact(3) {
        let at = usize::from(u16::from_le_bytes([pair[0], pair[1]])) % body.len();
        body[at] = pair[2];
    }
    let crc = crc32(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    check(&body, data);
});

fn crc32(bytes: &[u8]) -> u32 {
    crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(bytes)
}
