//! `cargo bench -p keel-runtime --features alloc --bench act`: host latency of one `act` call for
//! the default Pendulum actor (3-64-64-1), aligned (in place) and unaligned (decoded) weights, and
//! the cost of validating a blob.
#![allow(clippy::expect_used, clippy::indexing_slicing)]
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use keel_runtime::encode::{encode, PolicySpec};
use keel_runtime::Policy;

fn bench(c: &mut Criterion) {
    let blob = encode(&PolicySpec::example(3, &[64, 64], 1, 7)).expect("encode");
    let params = 3 * 64 + 64 + 64 * 64 + 64 + 64 + 1;
    println!(
        "3-64-64-1: {params} params, blob {} bytes, bound 4*params+128 = {}",
        blob.len(),
        4 * params + 128
    );

    // An aligned copy (u32 storage) and a deliberately misaligned one (offset by one byte).
    let mut words = vec![0u32; blob.len().div_ceil(4)];
    let aligned: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
    aligned[..blob.len()].copy_from_slice(&blob);
    let aligned = &aligned[..blob.len()];
    let mut shifted = vec![0u8; blob.len() + 1];
    shifted[1..].copy_from_slice(&blob);
    let unaligned = &shifted[1..];

    let p_al: Policy<'_, 64> = Policy::from_bytes(aligned).expect("aligned");
    let p_un: Policy<'_, 64> = Policy::from_bytes(unaligned).expect("unaligned");
    assert!(p_al.is_aligned() && !p_un.is_aligned());
    let obs = [0.3f32, -0.8, 1.7];
    let mut act = [0.0f32];
    c.bench_function("act 3-64-64-1 aligned", |b| {
        b.iter(|| p_al.act(black_box(&obs), black_box(&mut act)))
    });
    c.bench_function("act 3-64-64-1 unaligned", |b| {
        b.iter(|| p_un.act(black_box(&obs), black_box(&mut act)))
    });
    c.bench_function("from_bytes 3-64-64-1", |b| {
        b.iter(|| Policy::<'_, 64>::from_bytes(black_box(aligned)).map(|p| p.param_count()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
