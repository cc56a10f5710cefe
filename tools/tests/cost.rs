//! `keel-cost`'s measurement on the QEMU firmware: an instruction count per `act` that is exact
//! (two runs agree), plausible for the network's size, and sizes that add up. Skipped with the
//! reason when QEMU, defmt-print, the thumbv7em target or gcc is missing (fails when `CI` is set).
use keel_tools::closed_loop::example_policy;
use keel_tools::cost::{measure, shape};
use keel_tools::{prereq, qemu};

#[test]
fn instruction_counts_are_exact_and_plausible() {
    if !prereq::ready_or_skip("the keel-cost test", &prereq::cost()) {
        return;
    }
    let work = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("keel-cost-test");
    std::fs::create_dir_all(&work).unwrap();
    let blob = example_policy(keel_runtime::Activation::Relu).unwrap();
    let policy = work.join("policy.keel");
    std::fs::write(&policy, &blob).unwrap();
    let s = shape(&blob).unwrap();
    assert_eq!(s.dims, [3, 64, 64, 1]);
    assert_eq!(s.macs, 3 * 64 + 64 * 64 + 64);

    let plugin = qemu::build_plugin(&work).unwrap();
    let a = measure(&policy, false, &work, &plugin).unwrap();
    let b = measure(&policy, false, &work, &plugin).unwrap();
    assert_eq!(
        a.per_call, b.per_call,
        "instruction counts must be repeatable"
    );
    assert_eq!(a.per_call.len(), 200, "one bracket per closed-loop step");
    eprintln!(
        "act: mean {:.0} instructions ({:.2} per MAC), flash {} B, stack peak {} B",
        a.mean(),
        a.mean() / s.macs as f64,
        a.sizes.flash,
        a.stack_peak
    );
    // At least one instruction per MAC (a multiply-add each), and within the target of
    // 1.5 per MAC including activations, normalisation and squash. Counts are exact, so this
    // cannot flake; it fails when a change makes the kernel fall off its assembly path.
    assert!(a.min() as usize >= s.macs, "{} < {} MACs", a.min(), s.macs);
    assert!(
        a.mean() <= 1.5 * s.macs as f64,
        "{:.0} instructions per act = {:.3} per MAC, target 1.5",
        a.mean(),
        a.mean() / s.macs as f64
    );
    // Most of the time goes to the controller's code, not to the markers or nowhere.
    let attributed: f64 = a.by_function.iter().map(|(_, n)| n).sum();
    assert!(
        (attributed - a.mean()).abs() < 0.05 * a.mean(),
        "{attributed} vs {}",
        a.mean()
    );
    assert!(a.sizes.flash > a.plant_flash && a.plant_flash > 0);
    // The size targets for the whole QEMU firmware: <= 16 KB flash, <= 4 KB RAM besides
    // the weights (static data plus the deepest stack).
    assert!(a.sizes.flash <= 16 * 1024, "flash {} B", a.sizes.flash);
    let ram = a.sizes.ram_static + a.stack_peak;
    assert!(ram <= 4 * 1024, "RAM {ram} B");
    assert!(a.stack_peak >= a.stack_peak_act && a.stack_peak_act > 0);
}
