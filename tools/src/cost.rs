//! On-device cost of a policy on a Cortex-M4F, counted in QEMU: instructions per `act`, flash,
//! RAM. Used by the `keel-cost` binary (which documents the numbers) and its test.
//!
//! The QEMU firmware brackets every `act` of its closed loop with calls to `keel_cost_begin` and
//! `keel_cost_end`, after one empty bracket. The `insn_window` TCG plugin
//! (`tools/qemu-plugin/insn_window.c`) counts the guest instructions executed in each bracket,
//! which address ran how often inside them, and the stack's high-water marks.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keel_runtime::Policy;

use crate::closed_loop::CAPACITY;
use crate::elf::{function_at, Elf, Sizes};
use crate::{firmware, qemu, Error, Result};

/// The actor's shape: what one `act` computes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    /// Widths from the observation to the action, e.g. `[3, 64, 64, 1]`.
    pub dims: Vec<usize>,
    /// Multiply-accumulates per `act` (weights of all actor layers).
    pub macs: usize,
    /// The layers' activations, e.g. `FastTanh, FastTanh, Identity`.
    pub activations: String,
    pub blob_len: usize,
}

/// Validates `blob` (with the firmware's capacity) and describes its actor.
pub fn shape(blob: &[u8]) -> Result<Shape> {
    let p = Policy::<CAPACITY>::from_bytes(blob).map_err(|e| Error::ctx("policy", e))?;
    let layers: Vec<_> = p.layers().collect();
    let mut dims = vec![p.obs_dim()];
    dims.extend(layers.iter().map(|l| l.out_dim));
    let activations = layers
        .iter()
        .map(|l| format!("{:?}", l.activation))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(Shape {
        dims,
        macs: layers.iter().map(|l| l.in_dim * l.out_dim).sum(),
        activations,
        blob_len: blob.len(),
    })
}

/// What the plugin wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginReport {
    /// Instructions per bracket, in order (the first is the empty one).
    pub windows: Vec<u64>,
    /// Lowest stack address touched, whole run and inside brackets.
    pub stack_min_all: u64,
    pub stack_min_window: u64,
    /// The instruction that touched `stack_min_all`.
    pub stack_min_pc: u64,
    /// (address, executions inside brackets).
    pub hist: Vec<(u64, u64)>,
}

/// Parses the plugin's report file.
pub fn parse_plugin_report(text: &str) -> Result<PluginReport> {
    let mut r = PluginReport::default();
    let num = |s: Option<&str>| -> Result<u64> {
        let s = s.ok_or_else(|| Error("truncated plugin report".into()))?;
        match s.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16),
            None => s.parse(),
        }
        .map_err(|e| Error::ctx(format!("plugin report value `{s}`"), e))
    };
    for line in text.lines() {
        let mut w = line.split_whitespace();
        match w.next() {
            Some("window") => {
                w.next();
                r.windows.push(num(w.next())?);
            }
            Some("stack_min_all") => r.stack_min_all = num(w.next())?,
            Some("stack_min_window") => r.stack_min_window = num(w.next())?,
            Some("stack_min_pc") => r.stack_min_pc = num(w.next())?,
            Some("hist") => r.hist.push((num(w.next())?, num(w.next())?)),
            _ => {}
        }
    }
    Ok(r)
}

/// Code of the demo's plant simulation, which a real deployment does not carry: the pendulum's
/// step and observation, the f32 `sin`/`cos`/`fmod` only it calls, and (if a firmware ran the
/// plant in f64) libm's f64 functions and the soft-float f64 helpers (an M4F's FPU is single
/// precision). Matched by symbol name; the plant's constant tables are not attributed.
pub fn is_plant(name: &str) -> bool {
    let last = name.rsplit("::").next().unwrap_or(name);
    let f64_libm = name.starts_with("libm::") && !last.ends_with('f') && !last.contains("f32");
    let f32_trig = name.starts_with("libm::")
        && matches!(
            last,
            "sinf" | "cosf" | "fmodf" | "k_sinf" | "k_cosf" | "rem_pio2f"
        );
    name.contains("plants::")
        || name.starts_with("keel_qemu_m4::observe")
        || name.starts_with("keel_qemu_m4::plant_step")
        || f64_libm
        || f32_trig
        || name.contains("compiler_builtins::float::")
        || name.starts_with("__aeabi_d")
        || matches!(name, "__aeabi_f2d" | "__aeabi_i2d" | "__aeabi_ui2d")
}

/// One measured firmware variant.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// True when the blob sat one byte off alignment (byte-decoding path).
    pub unaligned: bool,
    /// Instructions of each `act` call, the marker overhead subtracted.
    pub per_call: Vec<u64>,
    /// Instructions of the empty bracket (subtracted above).
    pub overhead: u64,
    /// Instructions per call by function, most first.
    pub by_function: Vec<(String, f64)>,
    pub sizes: Sizes,
    /// Flash bytes of plant code (see [`is_plant`]).
    pub plant_flash: u64,
    /// Stack high-water mark over the whole run, and inside `act` calls (bytes below the top).
    pub stack_peak: u64,
    pub stack_peak_act: u64,
    /// Function that went deepest into the stack.
    pub stack_deepest_in: String,
    /// The firmware's `policy ok: ...` line.
    pub device_line: String,
}

impl Measurement {
    pub fn mean(&self) -> f64 {
        self.per_call.iter().sum::<u64>() as f64 / self.per_call.len().max(1) as f64
    }
    pub fn min(&self) -> u64 {
        self.per_call.iter().copied().min().unwrap_or_default()
    }
    pub fn max(&self) -> u64 {
        self.per_call.iter().copied().max().unwrap_or_default()
    }
}

/// Builds the firmware variant, runs it in QEMU with `policy` in its region and the plugin
/// `plugin` attached, writing the plugin's report into `work`.
pub fn measure(policy: &Path, unaligned: bool, work: &Path, plugin: &Path) -> Result<Measurement> {
    let elf_path = firmware::build_qemu_m4(unaligned)?;
    let elf = Elf::read(&elf_path)?;
    let begin = elf.symbol("keel_cost_begin")?;
    let end = elf.symbol("keel_cost_end")?;
    let region = elf.symbol("__policy_start")? + u64::from(unaligned);
    let stack_lo = elf.symbol("__sheap")?;
    let stack_hi = elf.symbol("_stack_start")?;
    let out = work.join(if unaligned {
        "windows-unaligned.txt"
    } else {
        "windows-aligned.txt"
    });
    let _ = std::fs::remove_file(&out);
    let run = qemu::run(&qemu::Boot {
        elf: &elf_path,
        policy: Some((policy, region)),
        plugin: Some((
            plugin,
            vec![
                format!("begin={begin:#x}"),
                format!("end={end:#x}"),
                format!("out={}", out.display()),
                format!("stack_lo={stack_lo:#x}"),
                format!("stack_hi={stack_hi:#x}"),
            ],
        )),
        timeout: Duration::from_secs(120),
    })?;
    if run.code() != Some(0) {
        return Err(Error(format!(
            "firmware did not run the policy on every step (exit {:?}):\n{}{}",
            run.code(),
            run.log,
            run.stderr
        )));
    }
    let device_line = run
        .log
        .lines()
        .find(|l| l.contains("policy ok"))
        .unwrap_or_default()
        .trim()
        .to_string();
    if !device_line.contains(&format!("aligned: {}", !unaligned)) {
        return Err(Error(format!(
            "firmware reports the wrong alignment for this variant: {device_line:?}"
        )));
    }
    let text = std::fs::read_to_string(&out)
        .map_err(|e| Error::ctx(format!("plugin report {}", out.display()), e))?;
    let report = parse_plugin_report(&text)?;
    let (&overhead, calls) = report
        .windows
        .split_first()
        .ok_or_else(|| Error("plugin saw no marker bracket".into()))?;
    if calls.is_empty() {
        return Err(Error("plugin saw no act bracket".into()));
    }

    let fns = elf.functions()?;
    let mut by_name: BTreeMap<&str, u64> = BTreeMap::new();
    for (addr, n) in &report.hist {
        let name = function_at(&fns, *addr).map_or("?", |f| f.name.as_str());
        *by_name.entry(name).or_default() += n;
    }
    let mut by_function: Vec<(String, f64)> = by_name
        .into_iter()
        .map(|(k, v)| (k.to_string(), v as f64 / calls.len() as f64))
        .collect();
    by_function.sort_by(|a, b| b.1.total_cmp(&a.1));

    Ok(Measurement {
        unaligned,
        per_call: calls.iter().map(|w| w.saturating_sub(overhead)).collect(),
        overhead,
        by_function,
        sizes: elf.sizes()?,
        plant_flash: fns
            .iter()
            .filter(|f| is_plant(&f.name))
            .map(|f| f.size)
            .sum(),
        stack_peak: stack_hi.saturating_sub(report.stack_min_all),
        stack_peak_act: stack_hi.saturating_sub(report.stack_min_window),
        stack_deepest_in: function_at(&fns, report.stack_min_pc)
            .map_or_else(|| format!("{:#x}", report.stack_min_pc), |f| f.name.clone()),
        device_line,
    })
}

/// Where keel-cost keeps its plugin, example policy and reports: `<target dir>/keel-cost`.
pub fn work_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| firmware::repo_root().join("target"))
        .join("keel-cost")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plugin_report() {
        let r = parse_plugin_report(
            "windows 2\nwindow 0 5\nwindow 1 105\nstack_min_all 0x203ff000\n\
             stack_min_window 0x203ff800\nstack_min_pc 0x1234\nhist 0x100 7\n",
        )
        .unwrap();
        assert_eq!(r.windows, [5, 105]);
        assert_eq!(r.stack_min_all, 0x203f_f000);
        assert_eq!(r.stack_min_pc, 0x1234);
        assert_eq!(r.hist, [(0x100, 7)]);
        assert!(parse_plugin_report("window 0 x\n").is_err());
    }

    #[test]
    fn plant_symbols_are_the_plants_own() {
        assert!(is_plant("libm::math::sinf::sinf"));
        assert!(is_plant("libm::math::rem_pio2f::rem_pio2f"));
        assert!(is_plant("libm::math::rem_pio2::rem_pio2"));
        assert!(is_plant("libm::math::k_sin::k_sin"));
        assert!(is_plant("__aeabi_dadd"));
        assert!(is_plant("keel_qemu_m4::plant_step"));
        assert!(!is_plant("libm::math::tanhf::tanhf"));
        assert!(!is_plant("libm::math::expm1f::expm1f"));
        assert!(!is_plant("keel_qemu_m4::__cortex_m_rt_main"));
    }
}
