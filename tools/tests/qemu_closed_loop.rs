//! The QEMU Cortex-M4F firmware (`firmware-examples/qemu-m4`) runs the pendulum closed loop with a
//! policy placed in its reserved region, and must produce the host's actions and return; a
//! corrupted policy must be rejected with its reason and the loop must run on the fallback.
//!
//! Builds the firmware (`cargo build --release` in its directory, ~1 min the first time), then
//! boots it in `qemu-system-arm` and decodes its log with `defmt-print`. Without QEMU, defmt-print
//! or the thumbv7em target this test is skipped with the reason, or fails when `CI` is set.
//!
//! The policy is trained by keel-trainer in the test (a short SAC run); set
//! `KEEL_QEMU_POLICY=path/to/policy.keel` to flash another trained pendulum policy instead.
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use keel_tools::closed_loop::{compare, host_run, parse_device_log, DeviceLog};
use keel_tools::elf::Elf;
use keel_tools::{firmware, prereq, qemu};
use keel_trainer::config::{Algo, TrainConfig};
use keel_trainer::train::train;

/// Device and host must agree this closely (they normally agree to the bit).
const TOLERANCE: f64 = 1e-5;

/// True if QEMU, defmt-print and the target are there; otherwise skips (or fails under CI).
fn prerequisites() -> bool {
    prereq::ready_or_skip(
        "the QEMU closed-loop test (.ci/run installs what it needs)",
        &prereq::qemu_run(),
    )
}

/// The firmware ELF, built once for all tests in this file.
fn firmware_elf() -> PathBuf {
    static ELF: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    ELF.get_or_init(|| firmware::build_qemu_m4(false).map_err(|e| e.to_string()))
        .clone()
        .unwrap_or_else(|e| panic!("building the QEMU firmware failed: {e}"))
}

/// A policy trained by keel-trainer (a short SAC run on Pendulum with the deployed 2x64 actor
/// and a small critic, about a second), or the file named by `KEEL_QEMU_POLICY`.
fn policy_blob() -> Vec<u8> {
    static BLOB: OnceLock<Vec<u8>> = OnceLock::new();
    BLOB.get_or_init(|| match std::env::var_os("KEEL_QEMU_POLICY") {
        Some(p) => std::fs::read(&p).unwrap_or_else(|e| panic!("KEEL_QEMU_POLICY {p:?}: {e}")),
        None => {
            let mut cfg = TrainConfig::for_env_algo("pendulum", Algo::Sac);
            cfg.steps = 600;
            cfg.eval_every = 600;
            cfg.eval_episodes = 1;
            cfg.sac.learning_starts = 100;
            cfg.sac.batch_size = 32;
            cfg.sac.critic_hidden = vec![32, 32];
            let dir = std::env::temp_dir().join(format!("keel-qemu-policy-{}", std::process::id()));
            let out = train(&cfg, &dir, false, false).expect("training the test policy");
            let blob = std::fs::read(&out.policy_path).expect("trained policy.keel");
            let _ = std::fs::remove_dir_all(&dir);
            blob
        }
    })
    .clone()
}

/// Writes `blob` to a file, boots the firmware with it in the policy region, parses the log.
fn run_on_device(name: &str, blob: &[u8]) -> (DeviceLog, Option<i32>, String) {
    let elf = firmware_elf();
    let region = Elf::read(&elf)
        .and_then(|e| e.symbol("__policy_start"))
        .expect("firmware ELF has __policy_start");
    let path =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("qemu-closed-loop-{name}.keel"));
    std::fs::write(&path, blob).expect("write policy file");
    let run = qemu::run(&qemu::Boot {
        elf: &elf,
        policy: Some((&path, region)),
        plugin: None,
        timeout: Duration::from_secs(60),
    })
    .expect("QEMU runs");
    assert!(!run.timed_out, "QEMU timed out; log so far:\n{}", run.log);
    let log = parse_device_log(&run.log).unwrap_or_else(|e| {
        panic!(
            "{e}\n--- device log ---\n{}\n--- stderr ---\n{}",
            run.log, run.stderr
        )
    });
    (log, run.code(), run.log)
}

#[test]
fn device_closed_loop_matches_host() {
    if !prerequisites() {
        return;
    }
    let blob = policy_blob();
    let (device, code, raw) = run_on_device("valid", &blob);
    assert_eq!(
        code,
        Some(0),
        "firmware exit status (0: policy drove every step)\n{raw}"
    );
    assert!(
        device.rejected.is_none(),
        "device rejected the policy: {:?}",
        device.rejected
    );
    let accepted = device.accepted.as_deref().unwrap_or_default();
    assert!(
        accepted.contains("aligned: true"),
        "policy not used in place: {accepted}"
    );
    assert_eq!(device.trace.fallback_steps, 0);

    let host = host_run(&blob, device.trace.start);
    assert_eq!(
        host.fallback_steps, 0,
        "host rejected the policy the device accepted"
    );
    let diff = compare(&host, &device.trace).expect("comparable traces");
    eprintln!(
        "device vs host over {} steps: return {} vs {}, max |action diff| {:e}, |return diff| {:e}, bit-exact: {}",
        host.actions.len(),
        device.trace.ret,
        host.ret,
        diff.max_action,
        diff.ret,
        diff.bit_exact
    );
    assert!(
        f64::from(diff.max_action) <= TOLERANCE,
        "actions differ: {diff:?}"
    );
    assert!(diff.ret <= TOLERANCE, "returns differ: {diff:?}");
    // The actions actually vary: a constant sequence would make the comparison vacuous.
    let (lo, hi) = host
        .actions
        .iter()
        .fold((f32::MAX, f32::MIN), |(l, h), a| (l.min(*a), h.max(*a)));
    assert!(hi - lo > 1e-3, "policy output is constant ({lo}..{hi})");
}

#[test]
fn corrupted_policy_is_rejected_and_device_falls_back() {
    if !prerequisites() {
        return;
    }
    let mut blob = policy_blob();
    // One flipped bit in the weights, as a bad flash write would leave it.
    let i = blob.len() / 2;
    blob[i] ^= 0x10;
    let (device, code, raw) = run_on_device("corrupt", &blob);
    assert_eq!(
        code,
        Some(2),
        "firmware exit status (2: fallback used)\n{raw}"
    );
    let reason = device.rejected.as_deref().unwrap_or_default();
    assert!(
        reason.starts_with("BadChecksum"),
        "device gave reason {reason:?}\n{raw}"
    );
    assert_eq!(device.trace.fallback_steps, device.trace.actions.len());
    assert!(
        device.trace.actions.iter().all(|a| *a == 0.0),
        "fallback is motor off"
    );

    // The host's SafeController rejects the same bytes and runs the same fallback loop.
    let host = host_run(&blob, device.trace.start);
    assert_eq!(host.fallback_steps, host.actions.len());
    let diff = compare(&host, &device.trace).expect("comparable traces");
    assert!(diff.ret <= TOLERANCE, "fallback returns differ: {diff:?}");
}

#[test]
fn empty_region_reads_as_no_policy() {
    if !prerequisites() {
        return;
    }
    // A zero-filled region (what an unwritten QEMU region holds) must be a clean BadMagic.
    let (device, code, raw) = run_on_device("empty", &[0u8; 64]);
    assert_eq!(code, Some(2), "{raw}");
    assert_eq!(device.rejected.as_deref(), Some("BadMagic"), "{raw}");
}

/// Policies shaped to reach every path of the device's dense kernels (assembly on the M4F, plain
/// Rust on the host): inputs of 1, 2, 3 and 4 (one load per block), 8 + 5 and 9 (eight-column
/// loop and column tail), tail-only widths of 6 and 8; 4-row blocks with leftover rows; ReLU,
/// identity, fast-tanh and tanh layers. Host and device must agree to the bit.
#[test]
fn device_kernels_match_host_bit_for_bit_on_odd_shapes() {
    use keel_runtime::encode::{encode, PolicySpec};
    use keel_runtime::Activation::{FastTanh, Identity, Relu, Tanh};
    if !prerequisites() {
        return;
    }
    let shapes: [(&[usize], &[keel_runtime::Activation]); 2] = [
        (&[13, 4, 8, 2, 4], &[Relu, Relu, Relu, Relu, Relu]),
        (&[9, 6, 1, 8], &[Identity, FastTanh, Tanh, Relu]),
    ];
    for (i, (hidden, acts)) in shapes.into_iter().enumerate() {
        let mut spec = PolicySpec::example(3, hidden, 1, 11 + i as u64);
        for (layer, act) in spec.actor.iter_mut().zip(acts) {
            layer.activation = *act;
        }
        let blob = encode(&spec).expect("encode");
        let (device, code, raw) = run_on_device(&format!("shape{i}"), &blob);
        assert_eq!(code, Some(0), "shape {hidden:?}: exit status\n{raw}");
        let host = host_run(&blob, device.trace.start);
        let diff = compare(&host, &device.trace).expect("comparable traces");
        assert!(
            diff.bit_exact,
            "shape {hidden:?} {acts:?}: device and host differ: {diff:?}"
        );
        let (lo, hi) = host
            .actions
            .iter()
            .fold((f32::MAX, f32::MIN), |(l, h), a| (l.min(*a), h.max(*a)));
        assert!(hi - lo > 1e-3, "shape {hidden:?}: constant output");
    }
}
