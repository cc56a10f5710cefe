//! keel-cost: what one policy `act` costs on a Cortex-M4F, counted in QEMU.
//!
//! ```text
//! cargo run -p keel-tools --release --bin keel-cost -- [--policy FILE] [--aligned-only]
//! ```
//!
//! Builds `firmware-examples/qemu-m4`, boots it in QEMU (`mps2-an386`) with the policy placed in
//! its reserved region and the `insn_window` TCG plugin (`tools/qemu-plugin/insn_window.c`, built
//! here with gcc), and reports:
//!
//! * guest instructions per `act` over the firmware's 200 closed-loop calls (the marker overhead,
//!   from an empty bracket, subtracted), per multiply-accumulate, and the functions they run in;
//! * flash (whole image, and without the demo plant's code), static RAM, and the stack's
//!   high-water mark (whole run, and during `act`).
//!
//! The default policy is the example 3-64-64-1 with ReLU hidden layers (the stand-in for a
//! trained one: the trainer's actors use ReLU); `--hidden fast-tanh` measures the other cheap
//! activation. Without
//! `--aligned-only` the firmware is measured twice: with the blob word-aligned (weights used in
//! place) and one byte off (the runtime's byte-decoding path). Counts are exact and repeatable.
//! Instructions are not cycles: an M4 with zero-wait-state memory takes roughly 1-2 cycles per
//! instruction (more for `vdiv`, `vldm`); the STM32F4 example measures real cycles with DWT.
use std::path::PathBuf;
use std::process::ExitCode;

use keel_runtime::Activation;
use keel_tools::closed_loop::example_policy;
use keel_tools::cost::{measure, shape, work_dir, Measurement, Shape};
use keel_tools::{prereq, qemu, Error, Result};

const USAGE: &str = "usage: keel-cost [--policy FILE | --hidden relu|fast-tanh] [--aligned-only]";

struct Args {
    policy: Option<PathBuf>,
    /// Hidden activation of the example policy (when no `--policy`).
    hidden: Activation,
    aligned_only: bool,
}

fn parse_args() -> Result<Option<Args>> {
    let mut args = Args {
        policy: None,
        hidden: Activation::Relu,
        aligned_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--policy" => {
                let p = it
                    .next()
                    .ok_or_else(|| Error(format!("--policy needs a file\n{USAGE}")))?;
                args.policy = Some(PathBuf::from(p));
            }
            "--hidden" => {
                args.hidden = match it.next().as_deref() {
                    Some("relu") => Activation::Relu,
                    Some("fast-tanh") => Activation::FastTanh,
                    other => {
                        return Err(Error(format!(
                            "--hidden takes relu or fast-tanh, not {other:?}\n{USAGE}"
                        )))
                    }
                }
            }
            "--aligned-only" => args.aligned_only = true,
            "-h" | "--help" => return Ok(None),
            other => return Err(Error(format!("unknown argument `{other}`\n{USAGE}"))),
        }
    }
    Ok(Some(args))
}

fn print(m: &Measurement, s: &Shape) {
    let label = if m.unaligned {
        "unaligned blob (weights decoded byte by byte)"
    } else {
        "aligned blob (weights used in place)"
    };
    println!("== {label} ==");
    println!("  device: {}", m.device_line);
    println!(
        "  instructions per act: mean {:.0}, min {}, max {} over {} calls (marker overhead {} subtracted)",
        m.mean(),
        m.min(),
        m.max(),
        m.per_call.len(),
        m.overhead
    );
    println!(
        "  per multiply-accumulate (incl. activations, normalisation, squash): {:.3}",
        m.mean() / s.macs as f64
    );
    println!("  where (instructions per call):");
    for (name, count) in m.by_function.iter().take(6) {
        println!("    {count:>9.1}  {name}");
    }
    println!(
        "  flash: {} B whole image; {} B without the demo plant's code ({} B)",
        m.sizes.flash,
        m.sizes.flash.saturating_sub(m.plant_flash),
        m.plant_flash
    );
    println!(
        "  RAM: {} B static + {} B stack peak = {} B (deepest in {}); during act: {} B of stack",
        m.sizes.ram_static,
        m.stack_peak,
        m.sizes.ram_static + m.stack_peak,
        m.stack_deepest_in,
        m.stack_peak_act
    );
}

fn run(args: Args) -> Result<()> {
    let missing = prereq::cost();
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(ToString::to_string).collect();
        return Err(Error(format!("missing {}", list.join("; "))));
    }
    let work = work_dir();
    std::fs::create_dir_all(&work).map_err(|e| Error::ctx(work.display(), e))?;
    let (blob, path) = match args.policy {
        Some(p) => (
            std::fs::read(&p).map_err(|e| Error::ctx(p.display(), e))?,
            p,
        ),
        None => {
            let blob = example_policy(args.hidden)?;
            let p = work.join("example-policy.keel");
            std::fs::write(&p, &blob).map_err(|e| Error::ctx(p.display(), e))?;
            (blob, p)
        }
    };
    let s = shape(&blob)?;
    let dims: Vec<String> = s.dims.iter().map(ToString::to_string).collect();
    println!(
        "policy {}: {} ({} bytes), {} MACs per act, activations [{}]",
        path.display(),
        dims.join("-"),
        s.blob_len,
        s.macs,
        s.activations
    );
    let plugin = qemu::build_plugin(&work)?;
    print(&measure(&path, false, &work, &plugin)?, &s);
    if !args.aligned_only {
        print(&measure(&path, true, &work, &plugin)?, &s);
    }
    Ok(())
}

fn main() -> ExitCode {
    let result = parse_args().and_then(|a| match a {
        Some(a) => run(a),
        None => {
            println!("{USAGE}");
            Ok(())
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keel-cost: {e}");
            ExitCode::FAILURE
        }
    }
}
