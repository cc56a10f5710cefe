//! Writes the example 3-64-64-1 pendulum policy (the stand-in for a trained one: ReLU hidden
//! layers like the trainer's actors) to a file:
//!
//! ```text
//! cargo run -p keel-tools --release --bin keel-example-policy -- firmware-examples/qemu-m4/policy.keel
//! ```
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path] = args.as_slice() else {
        eprintln!("usage: keel-example-policy OUT.keel");
        return ExitCode::from(2);
    };
    let blob = match keel_tools::closed_loop::example_policy(keel_runtime::Activation::Relu) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("keel-example-policy: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Write next to the target, then rename: no half-written policy is ever left behind.
    let tmp = format!("{path}.tmp");
    if let Err(e) = std::fs::write(&tmp, &blob).and_then(|()| std::fs::rename(&tmp, path)) {
        eprintln!("keel-example-policy: writing {path}: {e}");
        return ExitCode::FAILURE;
    }
    println!("wrote {path} ({} bytes)", blob.len());
    ExitCode::SUCCESS
}
