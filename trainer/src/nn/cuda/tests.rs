//! Each CUDA kernel against the CPU reference on random inputs. Without a usable device (CI),
//! every device test prints `SKIPPED: <reason>` and passes.

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

use super::rng::{normal_reference, uniform_index_reference};
use super::{probe, CudaBackend};
use crate::nn::backend::{AdamHyper, Backend, Mat, MatMut, SpectralSlot};
use crate::nn::{Activation, Adam, AdamConfig, CpuBackend, Mlp, MlpConfig};

const ALL: [Activation; 5] = [
    Activation::Identity,
    Activation::Relu,
    Activation::Silu,
    Activation::Tanh,
    Activation::FastTanh,
];

/// The device backend, or `None` after printing why the test is skipped.
fn gpu(test: &str) -> Option<CudaBackend> {
    match probe() {
        Ok(b) => Some(b),
        Err(why) => {
            println!("SKIPPED: {test}: {why}");
            None
        }
    }
}

fn rng(seed: u64) -> Pcg64 {
    Pcg64::seed_from_u64(seed)
}

fn random(rng: &mut Pcg64, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

fn up(g: &CudaBackend, x: &[f32]) -> cudarc::driver::CudaSlice<f32> {
    let mut b = g.alloc(x.len());
    g.upload(&mut b, 0, x);
    b
}

fn down(g: &CudaBackend, b: &cudarc::driver::CudaSlice<f32>) -> Vec<f32> {
    let mut out = vec![0.0; g.buf_len(b)];
    g.download(b, 0, &mut out);
    out
}

/// max |a - b| / (1 + |b|), asserted below `tol`.
#[track_caller]
fn close(what: &str, a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let mut worst = 0.0f32;
    let mut at = 0;
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let e = (x - y).abs() / (1.0 + y.abs());
        if e > worst || e.is_nan() {
            worst = e;
            at = i;
            if e.is_nan() {
                break;
            }
        }
    }
    assert!(
        worst <= tol,
        "{what}: worst relative error {worst} at {at} (gpu {}, cpu {})",
        a[at],
        b[at]
    );
}

#[test]
fn probe_never_panics_and_explains() {
    match probe() {
        Ok(g) => println!("CUDA device: {}", g.device_name()),
        Err(why) => {
            assert!(!why.is_empty());
            println!("SKIPPED: probe: {why}");
        }
    }
}

/// NVRTC needs no driver or GPU: wherever `libnvrtc.so` loads, every `.cu` must compile (this
/// catches kernel syntax errors on machines without a device).
#[test]
fn kernels_compile_with_nvrtc() {
    // SAFETY: only tries to dlopen the library.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        println!("SKIPPED: kernels_compile_with_nvrtc: no NVRTC (libnvrtc.so not found)");
        return;
    }
    let ptx = super::kernels::ptx().unwrap_or_else(|e| panic!("{e}"));
    for p in ptx {
        assert!(p.to_src().contains(".entry keel_"), "no kernel in PTX");
    }
}

#[test]
fn buffers_round_trip() {
    let Some(g) = gpu("buffers_round_trip") else {
        return;
    };
    let mut r = rng(1);
    let x = random(&mut r, 1000, 1.0);
    let mut b = g.alloc(1200);
    assert_eq!(g.buf_len(&b), 1200);
    g.upload(&mut b, 100, &x);
    let mut back = vec![0.0; 1000];
    g.download(&b, 100, &mut back);
    assert_eq!(back, x);
    let mut c = g.alloc(50);
    g.copy(&b, 150, &mut c, 10, 30);
    g.fill(&mut c, 45..50, 7.5);
    let c = down(&g, &c);
    assert!(c[..10].iter().all(|&v| v == 0.0));
    assert_eq!(&c[10..40], &x[50..80]);
    assert!(c[40..45].iter().all(|&v| v == 0.0));
    assert!(c[45..].iter().all(|&v| v == 7.5));
    let mut staging = Vec::new();
    assert_eq!(g.view(&b, 100..110, &mut staging), &x[..10]);
    assert_eq!(&*g.to_host(&b, 100..1100), &x[..]);
    assert_eq!(g.buf_len(&g.alloc(0)), 0);
}

/// `Mat::new(..)`, transposed when `t`.
fn mat<T>(buf: &T, off: usize, rows: usize, cols: usize, t: bool) -> Mat<'_, T> {
    let m = Mat::new(buf, off, rows, cols);
    if t {
        m.t()
    } else {
        m
    }
}

#[test]
fn gemm_matches_cpu() {
    let Some(g) = gpu("gemm_matches_cpu") else {
        return;
    };
    let mut r = rng(2);
    for &(m, k, n) in &[
        (1, 1, 1),
        (7, 5, 3),
        (256, 64, 256),
        (33, 129, 17),
        (4, 0, 3),
    ] {
        for ta in [false, true] {
            for tb in [false, true] {
                for &(alpha, beta) in &[(1.0f32, 0.0f32), (0.5, 1.0), (-1.0, 0.25)] {
                    let (ar, ac) = if ta { (k, m) } else { (m, k) };
                    let (br, bc) = if tb { (n, k) } else { (k, n) };
                    let (oa, ob, oc) = (3, 5, 2);
                    let a = random(&mut r, oa + ar * ac, 1.0);
                    let b = random(&mut r, ob + br * bc, 1.0);
                    let mut c = random(&mut r, oc + m * n, 1.0);
                    if beta == 0.0 {
                        c[oc..].fill(f32::NAN); // must not be read
                    }
                    let (ga, gb, mut gc) = (up(&g, &a), up(&g, &b), up(&g, &c));
                    let mut cc = c.clone();
                    CpuBackend.gemm(
                        alpha,
                        mat(&a, oa, ar, ac, ta),
                        mat(&b, ob, br, bc, tb),
                        beta,
                        MatMut::new(&mut cc, oc, m, n),
                    );
                    g.gemm(
                        alpha,
                        mat(&ga, oa, ar, ac, ta),
                        mat(&gb, ob, br, bc, tb),
                        beta,
                        MatMut::new(&mut gc, oc, m, n),
                    );
                    let got = down(&g, &gc);
                    assert_eq!(&got[..oc], &c[..oc], "gemm wrote before its output");
                    close(
                        &format!("gemm {m}x{k}x{n} ta {ta} tb {tb} beta {beta}"),
                        &got,
                        &cc,
                        1e-4 * (k as f32).sqrt().max(1.0),
                    );
                }
            }
        }
    }
}

#[test]
fn bias_act_forward_matches_cpu() {
    let Some(g) = gpu("bias_act_forward_matches_cpu") else {
        return;
    };
    let mut r = rng(3);
    let (rows, cols) = (67, 45);
    for act in ALL {
        for with_pre in [false, true] {
            let x = random(&mut r, rows * cols + 9, 6.0);
            let bias = random(&mut r, cols + 4, 1.0);
            let (mut cx, mut cpre) = (x.clone(), vec![0.0; rows * cols]);
            let (mut gx, gb, mut gpre) = (up(&g, &x), up(&g, &bias), g.alloc(rows * cols));
            CpuBackend.bias_act_forward(
                &mut cx,
                with_pre.then_some(&mut cpre),
                rows,
                cols,
                &bias,
                4,
                act,
            );
            g.bias_act_forward(
                &mut gx,
                with_pre.then_some(&mut gpre),
                rows,
                cols,
                &gb,
                4,
                act,
            );
            // ReLU, identity and fast tanh are exact; tanhf / expf within a few ulps.
            let tol = match act {
                Activation::Silu | Activation::Tanh => 1e-6,
                _ => 0.0,
            };
            close(&format!("{act:?} forward"), &down(&g, &gx), &cx, tol);
            if with_pre {
                close(&format!("{act:?} pre"), &down(&g, &gpre), &cpre, 0.0);
            }
        }
    }
}

#[test]
fn act_backward_matches_cpu() {
    let Some(g) = gpu("act_backward_matches_cpu") else {
        return;
    };
    let mut r = rng(4);
    for &(rows, cols) in &[(1, 1), (256, 256), (70, 33), (1000, 3)] {
        for act in ALL {
            for with_bias in [false, true] {
                let n = rows * cols;
                let pre = random(&mut r, n, 6.0);
                let y: Vec<f32> = pre.iter().map(|&z| act.apply(z)).collect();
                let d = random(&mut r, n, 1.0);
                let gb0 = random(&mut r, cols + 2, 1.0);
                let (mut cd, mut cgb) = (d.clone(), gb0.clone());
                let (mut gd, gy, gp, mut ggb) =
                    (up(&g, &d), up(&g, &y), up(&g, &pre), up(&g, &gb0));
                CpuBackend.act_backward(
                    &mut cd,
                    &y,
                    Some(&pre),
                    rows,
                    cols,
                    act,
                    with_bias.then_some((&mut cgb, 2)),
                );
                g.act_backward(
                    &mut gd,
                    &gy,
                    Some(&gp),
                    rows,
                    cols,
                    act,
                    with_bias.then_some((&mut ggb, 2)),
                );
                let tol = if act == Activation::Silu { 1e-6 } else { 0.0 };
                close(
                    &format!("{act:?} backward {rows}x{cols}"),
                    &down(&g, &gd),
                    &cd,
                    tol,
                );
                // Column sums in another order: relative to the sum of magnitudes.
                let tol_b = 1e-6 * rows as f32;
                close(
                    &format!("{act:?} dbias {rows}x{cols}"),
                    &down(&g, &ggb),
                    &cgb,
                    tol_b,
                );
            }
        }
    }
}

#[test]
fn adam_matches_cpu_exactly() {
    let Some(g) = gpu("adam_matches_cpu_exactly") else {
        return;
    };
    let mut r = rng(5);
    let n = 10_000;
    let (mut p, grad) = (random(&mut r, n, 1.0), random(&mut r, n, 0.1));
    let (mut m, mut v) = (random(&mut r, n, 0.01), random(&mut r, n, 0.001));
    v.iter_mut().for_each(|x| *x = x.abs());
    let (mut gp, ggr, mut gm, mut gv) = (up(&g, &p), up(&g, &grad), up(&g, &m), up(&g, &v));
    for t in 1..=3 {
        let h = AdamHyper {
            lr: 3e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: if t == 2 { 0.0 } else { 1e-4 },
            bias_correction1: 1.0 - 0.9f32.powi(t),
            bias_correction2: 1.0 - 0.999f32.powi(t),
        };
        CpuBackend.adam(&mut p, &grad, &mut m, &mut v, 10..n - 7, &h);
        g.adam(&mut gp, &ggr, &mut gm, &mut gv, 10..n - 7, &h);
    }
    close("adam params", &down(&g, &gp), &p, 0.0);
    close("adam m", &down(&g, &gm), &m, 0.0);
    close("adam v", &down(&g, &gv), &v, 0.0);
}

#[test]
fn polyak_scale_sum_squares_match_cpu() {
    let Some(g) = gpu("polyak_scale_sum_squares_match_cpu") else {
        return;
    };
    let mut r = rng(6);
    for n in [1usize, 31, 4097, 1_000_003] {
        let (mut dst, src) = (random(&mut r, n, 1.0), random(&mut r, n, 1.0));
        let (mut gd, gs) = (up(&g, &dst), up(&g, &src));
        CpuBackend.polyak(&mut dst, &src, 0.005);
        g.polyak(&mut gd, &gs, 0.005);
        close("polyak", &down(&g, &gd), &dst, 0.0);
        let range = n / 3..n;
        CpuBackend.scale(&mut dst, range.clone(), -1.7);
        g.scale(&mut gd, range.clone(), -1.7);
        close("scale", &down(&g, &gd), &dst, 0.0);
        let (c, d) = (
            CpuBackend.sum_squares(&dst, range.clone()),
            g.sum_squares(&gd, range),
        );
        assert!(
            (c - d).abs() <= 1e-5 * c.abs(),
            "sum_squares n {n}: cpu {c} gpu {d}"
        );
    }
}

#[test]
fn spectral_matches_cpu() {
    let Some(g) = gpu("spectral_matches_cpu") else {
        return;
    };
    let mut r = rng(7);
    for &(rows, cols) in &[(1, 1), (64, 17), (256, 256), (3, 400), (1100, 5)] {
        for iterate in [true, false] {
            let n = rows * cols;
            let w = random(&mut r, 2 + n, 0.3);
            let slot = SpectralSlot {
                offset: 3,
                rows,
                cols,
            };
            let mut st = random(&mut r, 3 + SpectralSlot::len(rows, cols), 1.0);
            // A unit u, as the network keeps it.
            let nu = st[slot.u()].iter().map(|x| x * x).sum::<f32>().sqrt();
            st[slot.u()].iter_mut().for_each(|x| *x /= nu);
            let mut wsn = vec![0.0; 1 + n];
            let (gw, mut gst, mut gwsn) = (up(&g, &w), up(&g, &st), up(&g, &wsn));
            CpuBackend.spectral_step(
                Mat::new(&w, 2, rows, cols),
                &mut st,
                slot,
                MatMut::new(&mut wsn, 1, rows, cols),
                iterate,
            );
            g.spectral_step(
                Mat::new(&gw, 2, rows, cols),
                &mut gst,
                slot,
                MatMut::new(&mut gwsn, 1, rows, cols),
                iterate,
            );
            let what = format!("spectral_step {rows}x{cols} iterate {iterate}");
            close(&format!("{what} state"), &down(&g, &gst), &st, 1e-5);
            close(&format!("{what} w_sn"), &down(&g, &gwsn), &wsn, 1e-5);

            let gr = random(&mut r, n, 1.0);
            let mut grad = random(&mut r, n, 1.0);
            let (ggr, mut ggrad) = (up(&g, &gr), up(&g, &grad));
            CpuBackend.spectral_backward(
                Mat::new(&gr, 0, rows, cols),
                Mat::new(&wsn, 1, rows, cols),
                &st,
                slot,
                MatMut::new(&mut grad, 0, rows, cols),
            );
            g.spectral_backward(
                Mat::new(&ggr, 0, rows, cols),
                Mat::new(&gwsn, 1, rows, cols),
                &gst,
                slot,
                MatMut::new(&mut ggrad, 0, rows, cols),
            );
            close(&format!("{what} backward"), &down(&g, &ggrad), &grad, 1e-4);
        }
    }
}

#[test]
fn normal_matches_host_reference() {
    let Some(g) = gpu("normal_matches_host_reference") else {
        return;
    };
    let mut rng_d = g.rng(42);
    let n = 100_003;
    let mut buf = g.alloc(n + 5);
    g.normal(&mut rng_d, &mut buf, 5..n + 5, 0.5, 2.0);
    g.normal(&mut rng_d, &mut buf, 0..5, 0.0, 1.0);
    let got = down(&g, &buf);
    let first = normal_reference(42, 0, n, 0.5, 2.0);
    let second = normal_reference(42, n.div_ceil(4) as u64, 5, 0.0, 1.0);
    close("normal", &got[5..], &first, 1e-5);
    close("normal after advance", &got[..5], &second, 1e-5);
}

#[test]
fn replay_sampling_matches_host_reference() {
    let Some(g) = gpu("replay_sampling_matches_host_reference") else {
        return;
    };
    let (rows, row_len, batch, filled) = (1000, 11, 256, 700u32);
    let mut r = rng(8);
    let data = random(&mut r, rows * row_len, 10.0);
    let src = up(&g, &data);
    let mut rng_d = g.rng(9);
    let mut idx = g.upload_new(&vec![0u32; batch]);
    let mut dst = g.alloc(batch * row_len);
    for round in 0..2u64 {
        g.uniform_indices(&mut rng_d, &mut idx, batch, filled);
        g.gather_rows(&src, rows, row_len, &idx, batch, &mut dst);
        let want_idx =
            uniform_index_reference(9, round * (batch as u64).div_ceil(4), batch, filled);
        assert_eq!(g.download_all(&idx), want_idx);
        let want: Vec<f32> = want_idx
            .iter()
            .flat_map(|&i| data[i as usize * row_len..][..row_len].iter().copied())
            .collect();
        assert_eq!(down(&g, &dst), want);
    }
}

/// The whole network code on both backends: same initialization, forward, backward (with
/// spectral norm, every activation kind that needs the pre-activation) and Adam steps.
#[test]
fn mlp_training_steps_match_cpu() {
    let Some(g) = gpu("mlp_training_steps_match_cpu") else {
        return;
    };
    for hidden in [Activation::Relu, Activation::Silu, Activation::FastTanh] {
        let cfg = MlpConfig {
            sizes: vec![9, 64, 64, 2],
            hidden,
            output: Activation::Tanh,
            spectral_norm: true,
            spectral_norm_output: true,
        };
        let b = 32;
        let mut cpu = Mlp::new(&CpuBackend, &cfg, b, &mut rng(10));
        let mut dev = Mlp::new(&g, &cfg, b, &mut rng(10));
        close("init", &dev.params(), &cpu.params(), 0.0);
        let (mut oc, mut og) = (
            Adam::new(&cpu, AdamConfig::default()),
            Adam::new(&dev, AdamConfig::default()),
        );
        let mut r = rng(11);
        for step in 0..5 {
            let x = random(&mut r, b * 9, 2.0);
            let dy = random(&mut r, b * 2, 0.1);
            let yc = cpu.forward(&x, b).to_vec();
            let yg = dev.forward(&x, b).to_vec();
            close(&format!("{hidden:?} step {step} forward"), &yg, &yc, 1e-4);
            cpu.zero_grad();
            dev.zero_grad();
            cpu.backward(&dy, b, true);
            dev.backward(&dy, b, true);
            close(
                &format!("{hidden:?} step {step} grads"),
                &dev.grads(),
                &cpu.grads(),
                1e-4,
            );
            oc.step(&mut cpu);
            og.step(&mut dev);
            close(
                &format!("{hidden:?} step {step} params"),
                &dev.params(),
                &cpu.params(),
                1e-4,
            );
        }
    }
}
