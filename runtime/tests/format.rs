//! Round trips, hand-computed actions, and rejection of every corrupted or foreign blob.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use keel_runtime::encode::{encode, DenseSpec, PolicySpec, RawLayer, RawNetwork};
use keel_runtime::format::{layer_kind, role};
use keel_runtime::{
    ActError, Activation, FormatError, Outcome, Policy, Reason, SafeController, Squash,
};

/// 2 -> 2 (relu) -> 1 with round numbers, so the action can be computed by hand.
fn tiny() -> PolicySpec {
    PolicySpec {
        name: "tiny".into(),
        env_id: "test".into(),
        keel_version: "0.1.0".into(),
        train_steps: 42,
        obs_mean: vec![1.0, -1.0],
        obs_inv_std: vec![0.5, 2.0],
        obs_clip: 0.0,
        act_low: vec![-2.0],
        act_high: vec![2.0],
        squash: Squash::Tanh,
        actor: vec![
            DenseSpec {
                in_dim: 2,
                out_dim: 2,
                weight: vec![1.0, 2.0, -1.0, 0.5],
                bias: vec![0.0, -3.0],
                activation: Activation::Relu,
            },
            DenseSpec {
                in_dim: 2,
                out_dim: 1,
                weight: vec![0.25, -1.0],
                bias: vec![0.1],
                activation: Activation::Identity,
            },
        ],
        extra_networks: vec![],
    }
}

#[test]
fn tiny_network_gives_hand_computed_action() {
    let blob = encode(&tiny()).unwrap();
    let p: Policy<'_, 8> = Policy::from_bytes(&blob).unwrap();
    // obs (3, 0): z = ((3-1)*0.5, (0+1)*2) = (1, 2)
    // h = relu((1*1 + 2*2 + 0, -1*1 + 0.5*2 - 3)) = relu(5, -3) = (5, 0)
    // y = 0.25*5 - 1*0 + 0.1 = 1.35 ; action = -2 + (tanh(1.35)+1)/2*4 = 2*tanh(1.35)
    let mut a = [0.0f32];
    p.act(&[3.0, 0.0], &mut a).unwrap();
    let expected = 2.0 * 1.35f32.tanh();
    assert!((a[0] - expected).abs() < 1e-6, "{} vs {expected}", a[0]);
    assert_eq!(p.param_count(), 6 + 3);
    assert_eq!(p.metadata().name, "tiny");
    assert_eq!(p.metadata().train_steps, 42);
    assert_eq!(p.layers().count(), 2);
}

#[test]
fn clip_squash_and_obs_clip() {
    let mut spec = tiny();
    spec.squash = Squash::Clip;
    spec.obs_clip = 1.5;
    let blob = encode(&spec).unwrap();
    let p: Policy<'_, 8> = Policy::from_bytes(&blob).unwrap();
    // z = (clamp(1, 1.5), clamp(2, 1.5)) = (1, 1.5); h = relu(1 + 3, -1 + 0.75 - 3) = (4, 0)
    // y = 1 + 0.1 = 1.1 -> clip 1 -> action = high = 2
    let mut a = [0.0f32];
    p.act(&[3.0, 0.0], &mut a).unwrap();
    assert_eq!(a[0], 2.0);
}

#[test]
fn round_trip_preserves_everything() {
    let spec = PolicySpec::example(5, &[16, 8], 2, 3);
    let blob = encode(&spec).unwrap();
    let p: Policy<'_, 16> = Policy::from_bytes(&blob).unwrap();
    assert_eq!((p.obs_dim(), p.act_dim()), (5, 2));
    assert_eq!(p.blob_len(), blob.len());
    let dims: Vec<_> = p
        .layers()
        .map(|l| (l.in_dim, l.out_dim, l.activation))
        .collect();
    assert_eq!(
        dims,
        vec![
            (5, 16, Activation::FastTanh),
            (16, 8, Activation::FastTanh),
            (8, 2, Activation::Identity)
        ]
    );
    assert_eq!(p.action_bounds(1), Some((-2.0, 2.0)));
    // A float reference computed straight from the spec.
    let obs = [0.3f32, -1.0, 2.0, 0.0, 5.0];
    let mut x: Vec<f32> = obs
        .iter()
        .zip(&spec.obs_mean)
        .zip(&spec.obs_inv_std)
        .map(|((o, m), s)| ((o - m) * s).clamp(-10.0, 10.0))
        .collect();
    for l in &spec.actor {
        x = (0..l.out_dim)
            .map(|j| {
                let z = l.bias[j]
                    + (0..l.in_dim)
                        .map(|i| l.weight[j * l.in_dim + i] * x[i])
                        .sum::<f32>();
                l.activation.apply(z)
            })
            .collect();
    }
    let expected: Vec<f32> = x.iter().map(|y| 2.0 * y.tanh()).collect();
    let mut a = [0.0f32; 2];
    p.act(&obs, &mut a).unwrap();
    for (got, want) in a.iter().zip(&expected) {
        assert!((got - want).abs() < 1e-5, "{a:?} vs {expected:?}");
    }
}

#[test]
fn blob_size_bound_for_default_pendulum_actor() {
    // As the trainer exports it: no normalisation, a realistic run name.
    let mut spec = PolicySpec::example(3, &[64, 64], 1, 1);
    spec.obs_mean.clear();
    spec.obs_inv_std.clear();
    spec.name = "pendulum-mbpo-seed0".into(); // `keel train`'s default run name
    spec.train_steps = 1_000_000;
    let blob = encode(&spec).unwrap();
    let params = 3 * 64 + 64 + 64 * 64 + 64 + 64 + 1;
    assert!(
        blob.len() <= 4 * params + 128,
        "{} > {}",
        blob.len(),
        4 * params + 128
    );
    let p: Policy<'_, 64> = Policy::from_bytes(&blob).unwrap();
    assert_eq!(p.obs_dim(), 3);
    assert_eq!(p.obs_normalization(2), Some((0.0, 1.0)));
    assert_eq!(p.obs_normalization(3), None);
}

#[test]
fn identity_normalization_equals_explicit_zero_one() {
    let mut spec = PolicySpec::example(3, &[16], 1, 4);
    spec.obs_mean = vec![0.0; 3];
    spec.obs_inv_std = vec![1.0; 3];
    let explicit = encode(&spec).unwrap();
    spec.obs_mean.clear();
    spec.obs_inv_std.clear();
    let implicit = encode(&spec).unwrap();
    assert_eq!(explicit.len(), implicit.len() + 24);
    let p = Policy::<'_, 16>::from_bytes(&explicit).unwrap();
    let q = Policy::<'_, 16>::from_bytes(&implicit).unwrap();
    let (mut a, mut b) = ([0.0f32], [0.0f32]);
    for obs in [[0.1f32, -0.5, 3.0], [100.0, -100.0, 0.0]] {
        p.act(&obs, &mut a).unwrap();
        q.act(&obs, &mut b).unwrap();
        assert_eq!(a, b);
    }
    // Only one of the two tensors empty is malformed.
    spec.obs_mean = vec![0.0; 3];
    assert_eq!(
        Policy::<'_, 16>::from_bytes(&encode(&spec).unwrap()).unwrap_err(),
        FormatError::ShapeMismatch
    );
}

#[test]
fn every_single_bit_flip_is_rejected() {
    let blob = encode(&tiny()).unwrap();
    for i in 0..blob.len() * 8 {
        let mut b = blob.clone();
        b[i / 8] ^= 1 << (i % 8);
        assert!(
            Policy::<'_, 8>::from_bytes(&b).is_err(),
            "flip of bit {i} accepted"
        );
    }
}

#[test]
fn every_truncation_and_extension_is_rejected() {
    let blob = encode(&PolicySpec::example(3, &[8], 1, 9)).unwrap();
    for n in 0..blob.len() {
        assert!(
            Policy::<'_, 8>::from_bytes(&blob[..n]).is_err(),
            "prefix of {n} bytes accepted"
        );
    }
    let mut longer = blob.clone();
    longer.push(0);
    assert!(Policy::<'_, 8>::from_bytes(&longer).is_err());
}

/// Recomputes the CRC so that a deliberately edited blob reaches the later checks.
fn with_crc(mut body: Vec<u8>) -> Vec<u8> {
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    body
}

fn strip_crc(blob: &[u8]) -> Vec<u8> {
    blob[..blob.len() - 4].to_vec()
}

#[test]
fn typed_errors_for_foreign_newer_and_bad_blobs() {
    let blob = encode(&tiny()).unwrap();
    let mut b = strip_crc(&blob);
    b[0] = b'X';
    assert_eq!(
        Policy::<'_, 8>::from_bytes(&with_crc(b)).unwrap_err(),
        FormatError::BadMagic
    );

    let mut b = strip_crc(&blob);
    b[4] = 2;
    assert_eq!(
        Policy::<'_, 8>::from_bytes(&with_crc(b)).unwrap_err(),
        FormatError::UnsupportedVersion {
            found: 2,
            supported: 1
        }
    );

    let mut b = blob.clone();
    let last = b.len() - 1;
    b[last] ^= 0xff;
    assert!(matches!(
        Policy::<'_, 8>::from_bytes(&b),
        Err(FormatError::BadChecksum { .. })
    ));

    assert_eq!(
        Policy::<'_, 8>::from_bytes(&[]).unwrap_err(),
        FormatError::TooShort { len: 0 }
    );

    // Capacity: a 2-wide hidden layer does not fit a capacity-1 build.
    assert_eq!(
        Policy::<'_, 1>::from_bytes(&blob).unwrap_err(),
        FormatError::CapacityExceeded {
            dim: 2,
            capacity: 1
        }
    );
}

#[test]
fn non_finite_parameters_and_bad_bounds_are_rejected() {
    let mut spec = tiny();
    spec.actor[0].weight[1] = f32::NAN;
    assert_eq!(
        Policy::<'_, 8>::from_bytes(&encode(&spec).unwrap()).unwrap_err(),
        FormatError::NonFiniteParameter
    );
    let mut spec = tiny();
    spec.obs_inv_std[0] = f32::INFINITY;
    assert_eq!(
        Policy::<'_, 8>::from_bytes(&encode(&spec).unwrap()).unwrap_err(),
        FormatError::NonFiniteParameter
    );
    let mut spec = tiny();
    spec.act_low[0] = 3.0;
    assert_eq!(
        Policy::<'_, 8>::from_bytes(&encode(&spec).unwrap()).unwrap_err(),
        FormatError::BadActionBounds
    );
}

#[test]
fn shape_mismatches_are_rejected() {
    let mut spec = tiny();
    spec.actor[1].in_dim = 3;
    spec.actor[1].weight.push(0.0);
    assert_eq!(
        Policy::<'_, 8>::from_bytes(&encode(&spec).unwrap()).unwrap_err(),
        FormatError::ShapeMismatch
    );
    let mut spec = tiny();
    spec.actor[0].bias.pop();
    assert_eq!(
        Policy::<'_, 8>::from_bytes(&encode(&spec).unwrap()).unwrap_err(),
        FormatError::ShapeMismatch
    );
    let mut spec = tiny();
    spec.act_low.push(-1.0);
    spec.act_high.push(1.0);
    assert_eq!(
        Policy::<'_, 8>::from_bytes(&encode(&spec).unwrap()).unwrap_err(),
        FormatError::ShapeMismatch
    );
    let mut spec = tiny();
    spec.actor.clear();
    assert_eq!(
        Policy::<'_, 8>::from_bytes(&encode(&spec).unwrap()).unwrap_err(),
        FormatError::MissingActor
    );
}

#[test]
fn unknown_kinds_give_typed_errors_and_optional_networks_are_skipped() {
    // An int8 layer (kind 1) in the actor: a v1 reader must say so, not misread it.
    let mut spec = tiny();
    let mut raw = spec.actor[0].to_raw();
    raw.kind = layer_kind::DENSE_I8;
    spec.actor.clear();
    spec.extra_networks.push(RawNetwork {
        role: role::ACTOR,
        required: true,
        layers: vec![raw],
    });
    assert_eq!(
        Policy::<'_, 8>::from_bytes(&encode(&spec).unwrap()).unwrap_err(),
        FormatError::UnsupportedLayerKind { kind: 1 }
    );

    // An unknown activation code.
    let mut spec = tiny();
    let mut raw = spec.actor.remove(0).to_raw();
    raw.activation = 99;
    let second = spec.actor.remove(0).to_raw();
    spec.extra_networks.push(RawNetwork {
        role: role::ACTOR,
        required: true,
        layers: vec![raw, second],
    });
    assert_eq!(
        Policy::<'_, 8>::from_bytes(&encode(&spec).unwrap()).unwrap_err(),
        FormatError::UnsupportedActivation { code: 99 }
    );

    // A critic network for monitoring, and an unknown optional network: skipped, actions unchanged.
    let base = encode(&tiny()).unwrap();
    let mut spec = tiny();
    let critic_layer = RawLayer {
        kind: layer_kind::DENSE_F32,
        in_dim: 3,
        out_dim: 1,
        activation: 0,
        params: vec![vec![0; 12], vec![0; 4]],
    };
    spec.extra_networks.push(RawNetwork {
        role: role::CRITIC,
        required: false,
        layers: vec![critic_layer.clone()],
    });
    spec.extra_networks.push(RawNetwork {
        role: 7,
        required: false,
        layers: vec![critic_layer.clone()],
    });
    let extended = encode(&spec).unwrap();
    let (p0, p1) = (
        Policy::<'_, 8>::from_bytes(&base).unwrap(),
        Policy::<'_, 8>::from_bytes(&extended).unwrap(),
    );
    let (mut a0, mut a1) = ([0.0f32], [0.0f32]);
    p0.act(&[0.5, 0.5], &mut a0).unwrap();
    p1.act(&[0.5, 0.5], &mut a1).unwrap();
    assert_eq!(a0, a1);

    // The same unknown network marked required is refused.
    let mut spec = tiny();
    spec.extra_networks.push(RawNetwork {
        role: 7,
        required: true,
        layers: vec![critic_layer],
    });
    assert_eq!(
        Policy::<'_, 8>::from_bytes(&encode(&spec).unwrap()).unwrap_err(),
        FormatError::UnsupportedNetwork { role: 7 }
    );
}

#[test]
fn bad_observations_give_typed_errors_and_leave_action_untouched() {
    let blob = encode(&tiny()).unwrap();
    let p: Policy<'_, 8> = Policy::from_bytes(&blob).unwrap();
    let mut a = [7.0f32];
    assert_eq!(
        p.act(&[f32::NAN, 0.0], &mut a),
        Err(ActError::NonFinite { index: 0 })
    );
    assert_eq!(
        p.act(&[0.0, f32::NEG_INFINITY], &mut a),
        Err(ActError::NonFinite { index: 1 })
    );
    assert_eq!(
        p.act(&[0.0], &mut a),
        Err(ActError::Dim {
            expected: 2,
            found: 1
        })
    );
    assert_eq!(
        p.act(&[0.0, 0.0], &mut []),
        Err(ActError::Dim {
            expected: 1,
            found: 0
        })
    );
    assert_eq!(a, [7.0]);
    // Extreme but finite observations: with clamped normalisation (what the trainer exports)
    // always an in-bounds action; without it, an in-bounds action or NonFiniteOutput.
    let mut clamped = tiny();
    clamped.obs_clip = 10.0;
    let clamped = encode(&clamped).unwrap();
    let q: Policy<'_, 8> = Policy::from_bytes(&clamped).unwrap();
    for o in [f32::MAX, f32::MIN, 1e30, -1e-30] {
        q.act(&[o, -o], &mut a).unwrap();
        assert!(
            a[0].is_finite() && (-2.0..=2.0).contains(&a[0]),
            "{o}: {a:?}"
        );
        match p.act(&[o, -o], &mut a) {
            Ok(()) => assert!(a[0].is_finite() && (-2.0..=2.0).contains(&a[0])),
            Err(e) => assert_eq!(e, ActError::NonFiniteOutput),
        }
    }
}

#[test]
fn overflowing_network_reports_non_finite_output() {
    let mut spec = tiny();
    spec.actor[0].weight = vec![3e38, 3e38, 3e38, 3e38];
    spec.actor[1].weight = vec![3e38, -3e38];
    let blob = encode(&spec).unwrap();
    let p: Policy<'_, 8> = Policy::from_bytes(&blob).unwrap();
    let mut a = [0.5f32];
    assert_eq!(p.act(&[1e3, 1e3], &mut a), Err(ActError::NonFiniteOutput));
    assert_eq!(a, [0.5]);
}

#[test]
fn safe_controller_falls_back_with_reason() {
    static FALLBACK: [f32; 1] = [0.0];
    let blob = encode(&tiny()).unwrap();
    let ok: SafeController<'_, 8> = SafeController::new(&blob, &FALLBACK);
    let mut a = [9.0f32];
    assert_eq!(ok.act(&[3.0, 0.0], &mut a), Outcome::Policy);
    assert!((a[0] - 2.0 * 1.35f32.tanh()).abs() < 1e-6);
    assert_eq!(
        ok.act(&[f32::NAN, 0.0], &mut a),
        Outcome::Fallback(Reason::Act(ActError::NonFinite { index: 0 }))
    );
    assert_eq!(a, [0.0]);

    let mut bad = blob.clone();
    bad[10] ^= 4;
    let broken: SafeController<'_, 8> = SafeController::new(&bad, &FALLBACK);
    a = [9.0];
    match broken.act(&[3.0, 0.0], &mut a) {
        Outcome::Fallback(Reason::Load(FormatError::BadChecksum { .. })) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(a, [0.0]);
    assert!(broken.policy().is_err());
    let msg = format!("{}", Reason::Load(FormatError::BadMagic));
    assert!(msg.contains("bad magic"), "{msg}");
}
