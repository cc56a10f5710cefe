//! `keel_region::blob` (used by both firmware examples to find an unmodified `.keel` file at the
//! start of a flash region) on the host: it must return exactly the encoded blob whatever follows
//! it, and leave every corruption for `Policy::from_bytes` to report.
use keel_region::blob;
use keel_runtime::encode::{encode, PolicySpec, RawLayer, RawNetwork};
use keel_runtime::{FormatError, Policy};

fn specs() -> Vec<PolicySpec> {
    let mut identity = PolicySpec::example(2, &[5], 1, 3);
    identity.obs_mean.clear();
    identity.obs_inv_std.clear();
    let mut with_critic = PolicySpec::example(3, &[8, 8], 1, 4);
    with_critic.extra_networks.push(RawNetwork {
        role: 1,
        required: false,
        layers: vec![RawLayer {
            kind: 0,
            in_dim: 4,
            out_dim: 1,
            activation: 0,
            params: vec![vec![0u8; 16], vec![0u8; 4]],
        }],
    });
    vec![
        PolicySpec::example(3, &[64, 64], 1, 7),
        PolicySpec::example(1, &[], 1, 1),
        identity,
        with_critic,
    ]
}

/// The blob followed by `fill` bytes, as in a flash sector (erased 0xFF) or QEMU region (0x00).
fn region(bytes: &[u8], fill: u8, extra: usize) -> Vec<u8> {
    let mut r = bytes.to_vec();
    r.resize(bytes.len() + extra, fill);
    r
}

#[test]
fn finds_exactly_the_blob_whatever_follows() {
    for spec in specs() {
        let bytes = encode(&spec).unwrap();
        for (fill, extra) in [(0xFF, 4096), (0x00, 100), (0xA5, 3), (0x00, 0)] {
            let r = region(&bytes, fill, extra);
            let found = blob(&r).unwrap();
            assert_eq!(
                found,
                &bytes[..],
                "spec {:?} fill {fill:#x}",
                spec.actor.len()
            );
            assert!(Policy::<64>::from_bytes(found).is_ok());
        }
    }
}

#[test]
fn erased_or_empty_regions_have_no_policy() {
    assert_eq!(blob(&[0xFF; 1024]), Err(FormatError::BadMagic));
    assert_eq!(blob(&[0x00; 1024]), Err(FormatError::BadMagic));
    assert_eq!(blob(&[]), Err(FormatError::TooShort { len: 0 }));
    assert_eq!(blob(b"KEE"), Err(FormatError::TooShort { len: 3 }));
}

#[test]
fn newer_versions_are_reported_not_misread() {
    let mut bytes = encode(&specs()[0]).unwrap();
    bytes[4] = 2;
    assert!(matches!(
        blob(&region(&bytes, 0xFF, 64)),
        Err(FormatError::UnsupportedVersion { found: 2, .. })
    ));
}

#[test]
fn every_single_byte_corruption_is_rejected_by_the_runtime() {
    // Small policy so every byte can be tried; every bit-flip position, one bit each.
    let bytes = encode(&PolicySpec::example(2, &[3], 1, 9)).unwrap();
    for i in 0..bytes.len() {
        for bit in [0x01u8, 0x80] {
            let mut r = region(&bytes, 0xFF, 256);
            r[i] ^= bit;
            let result = blob(&r).and_then(Policy::<64>::from_bytes);
            assert!(result.is_err(), "flip {bit:#x} at byte {i} accepted");
        }
    }
}

#[test]
fn a_blob_cut_by_the_region_end_is_a_checksum_error() {
    let bytes = encode(&specs()[0]).unwrap();
    let cut = &bytes[..bytes.len() - 10];
    let found = blob(cut).unwrap();
    assert_eq!(found.len(), cut.len());
    assert!(matches!(
        Policy::<64>::from_bytes(found),
        Err(FormatError::BadChecksum { .. })
    ));
}

#[test]
fn a_flip_in_the_weights_reads_as_checksum_mismatch() {
    let bytes = encode(&specs()[0]).unwrap();
    let mut r = region(&bytes, 0xFF, 4096);
    r[bytes.len() / 2] ^= 0x10;
    let err = blob(&r).and_then(Policy::<64>::from_bytes).unwrap_err();
    assert!(matches!(err, FormatError::BadChecksum { .. }), "{err:?}");
    assert!(err.to_string().contains("checksum mismatch"));
}
