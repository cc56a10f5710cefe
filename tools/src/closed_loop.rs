//! The pendulum closed loop that the QEMU firmware runs, computed on the host, and the parser for
//! the device's log of it.
//!
//! Both sides use `keel_runtime`'s `SafeController` and the shared plant
//! (`keel_runtime::plants::pendulum` in f32 with `F32Trig`), so they should agree to the last bit; the
//! host test allows 1e-5. The log format is defined by `firmware-examples/qemu-m4/src/main.rs`:
//!
//! ```text
//! start th 0x40400000 thdot 0x00000000               (f32 bits of the initial state)
//! step 0 action -1.23 bits 0xbf9d70a4                (one line per step, f32 bits)
//! summary steps 200 return -1234.5 bits 0xc49a5000 action_sum -3.1 fnv 0x1234abcd fallback_steps 0
//! ```
use keel_runtime::encode::{encode, PolicySpec};
use keel_runtime::plants::pendulum::{F32Trig, PendulumState, MAX_EPISODE_STEPS};
use keel_runtime::{Activation, Outcome, SafeController};

use crate::{Error, Result};

/// The firmware's fallback action (motor off); must match `FALLBACK` in the firmware.
pub const FALLBACK: [f32; 1] = [0.0];
/// The firmware's compile-time capacity `W`; must match `CAPACITY` in the firmware.
pub const CAPACITY: usize = 64;
/// Seed of the example policy that stands in for a trained one.
pub const EXAMPLE_SEED: u64 = 7;

/// A deterministic pendulum-shaped 3-64-64-1 policy blob with `hidden` activations (the trainer
/// exports [`Activation::Relu`]; `FastTanh` is the runtime's other cheap one).
pub fn example_policy(hidden: Activation) -> Result<Vec<u8>> {
    let spec = PolicySpec::example(3, &[64, 64], 1, EXAMPLE_SEED).with_hidden_activation(hidden);
    encode(&spec).map_err(|e| Error::ctx("encoding the example policy", e))
}

/// One closed-loop episode.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// The firmware's plant runs in f32 (its FPU's precision), and so does the host's copy.
    pub start: PendulumState<f32>,
    pub actions: Vec<f32>,
    /// Sum of rewards, accumulated in f32 step by step as on the device.
    pub ret: f32,
    /// Steps on which the fallback action was used.
    pub fallback_steps: usize,
}

/// Runs the firmware's loop on the host: `MAX_EPISODE_STEPS` steps from `start`, every action
/// from a `SafeController` over `blob` (the fallback if it is rejected).
pub fn host_run(blob: &[u8], start: PendulumState<f32>) -> Trace {
    let controller = SafeController::<CAPACITY>::new(blob, &FALLBACK);
    let mut state = start;
    let mut trace = Trace {
        start,
        actions: Vec::with_capacity(MAX_EPISODE_STEPS),
        ret: 0.0,
        fallback_steps: 0,
    };
    let mut action = [0.0f32; 1];
    for _ in 0..MAX_EPISODE_STEPS {
        let obs = state.observation::<F32Trig>();
        if let Outcome::Fallback(_) = controller.act(&obs, &mut action) {
            trace.fallback_steps += 1;
        }
        trace.actions.push(action[0]);
        trace.ret += state.step::<F32Trig>(action[0]);
    }
    trace
}

/// 32-bit FNV-1a over the little-endian bytes of each action's bits, as the firmware computes it.
pub fn fnv1a(actions: &[f32]) -> u32 {
    actions
        .iter()
        .flat_map(|a| a.to_bits().to_le_bytes())
        .fold(0x811c_9dc5, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        })
}

/// What the device reported.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceLog {
    pub trace: Trace,
    /// The digest the device computed (checked against `trace.actions` by the parser).
    pub fnv: u32,
    /// `Some(reason)` when the device logged that it rejected the policy.
    pub rejected: Option<String>,
    /// The device's `policy ok: ...` line, if any.
    pub accepted: Option<String>,
}

/// The token after `key` in `line`, e.g. `field("step 3 bits 0x1", "bits") == Some("0x1")`.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let mut words = line.split_whitespace();
    words.by_ref().find(|w| *w == key)?;
    words.next()
}

fn hex<T>(
    line: &str,
    key: &str,
    parse: impl Fn(&str, u32) -> Result<T, std::num::ParseIntError>,
) -> Result<T> {
    field(line, key)
        .and_then(|v| v.strip_prefix("0x"))
        .and_then(|v| parse(v, 16).ok())
        .ok_or_else(|| Error(format!("no hex `{key}` in device line: {line}")))
}

fn number<T: std::str::FromStr>(line: &str, key: &str) -> Result<T> {
    field(line, key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error(format!("no `{key}` number in device line: {line}")))
}

/// Parses the device's decoded defmt log. Checks that every step is present once and in order,
/// and that the device's own digest matches the parsed actions (no line lost or garbled).
pub fn parse_device_log(log: &str) -> Result<DeviceLog> {
    let mut start = None;
    let mut actions = Vec::new();
    let mut summary = None;
    let (mut rejected, mut accepted) = (None, None);
    for line in log.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["start", ..] => {
                start = Some(PendulumState {
                    th: f32::from_bits(hex(line, "th", u32::from_str_radix)?),
                    thdot: f32::from_bits(hex(line, "thdot", u32::from_str_radix)?),
                })
            }
            ["step", ..] if field(line, "bits").is_some() => {
                let step: usize = number(line, "step")?;
                if step != actions.len() {
                    return Err(Error(format!(
                        "device log skips from step {} to {step}",
                        actions.len()
                    )));
                }
                actions.push(f32::from_bits(hex(line, "bits", u32::from_str_radix)?));
            }
            ["summary", ..] => summary = Some(line),
            _ => {}
        }
        if let Some((_, reason)) = line.split_once("policy rejected: ") {
            let reason = reason.split(';').next().unwrap_or(reason);
            rejected = Some(reason.trim().to_string());
        }
        if line.contains("policy ok: ") {
            accepted = Some(line.trim().to_string());
        }
    }
    let start = start.ok_or_else(|| Error("device log has no `start` line".into()))?;
    let summary = summary.ok_or_else(|| {
        Error("device log has no `summary` line (did the firmware panic or time out?)".into())
    })?;
    let steps: usize = number(summary, "steps")?;
    if steps != actions.len() {
        return Err(Error(format!(
            "device reports {steps} steps but logged {}",
            actions.len()
        )));
    }
    let fnv = hex(summary, "fnv", u32::from_str_radix)?;
    if fnv != fnv1a(&actions) {
        return Err(Error(format!(
            "device digest {fnv:#010x} != digest of its logged actions {:#010x}",
            fnv1a(&actions)
        )));
    }
    Ok(DeviceLog {
        trace: Trace {
            start,
            actions,
            ret: f32::from_bits(hex(summary, "bits", u32::from_str_radix)?),
            fallback_steps: number(summary, "fallback_steps")?,
        },
        fnv,
        rejected,
        accepted,
    })
}

/// How far two traces are apart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Difference {
    pub max_action: f32,
    pub ret: f64,
    /// Every action and the return agree to the bit.
    pub bit_exact: bool,
}

/// Compares two traces of the same length (an error if the lengths or starts differ).
pub fn compare(host: &Trace, device: &Trace) -> Result<Difference> {
    if host.actions.len() != device.actions.len() {
        return Err(Error(format!(
            "host ran {} steps, device {}",
            host.actions.len(),
            device.actions.len()
        )));
    }
    if host.start != device.start {
        return Err(Error(format!(
            "different starts: host {:?}, device {:?}",
            host.start, device.start
        )));
    }
    let pairs = host.actions.iter().zip(&device.actions);
    let max_action = pairs
        .clone()
        .map(|(h, d)| (h - d).abs())
        .fold(0.0f32, f32::max);
    let bit_exact =
        pairs.into_iter().all(|(h, d)| h.to_bits() == d.to_bits()) && host.ret == device.ret;
    Ok(Difference {
        max_action,
        ret: (f64::from(host.ret) - f64::from(device.ret)).abs(),
        bit_exact,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_firmware_prints() {
        let actions = [0.5f32, -1.25];
        let log = format!(
            "INFO  policy ok: example for pendulum, 4417 parameters, 17792 bytes, aligned: true\n\
             start th 0x40400000 thdot 0x00000000\n\
             step 0 action 0.5 bits {:#010x}\n\
             step 1 action -1.25 bits {:#010x}\n\
             summary steps 2 return -3.5 bits {:#010x} action_sum -0.75 fnv {:#010x} fallback_steps 0\n",
            actions[0].to_bits(),
            actions[1].to_bits(),
            (-3.5f32).to_bits(),
            fnv1a(&actions)
        );
        let d = parse_device_log(&log).unwrap();
        assert_eq!(d.trace.actions, actions);
        assert_eq!(d.trace.ret, -3.5);
        assert_eq!(d.trace.start.th, 3.0);
        assert!(d.accepted.is_some() && d.rejected.is_none());
        // A lost line breaks the digest or the step sequence.
        let lost: String = log
            .lines()
            .filter(|l| !l.starts_with("step 0"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(parse_device_log(&lost).is_err());
    }

    #[test]
    fn rejected_reason_is_extracted() {
        let log = "WARN  policy rejected: BadChecksum { stored: 1, computed: 2 }; running on the fallback action\n\
                   start th 0x0 thdot 0x0\nsummary steps 0 return 0 bits 0x0 action_sum 0 fnv 0x811c9dc5 fallback_steps 0\n";
        let d = parse_device_log(log).unwrap();
        assert_eq!(
            d.rejected.as_deref(),
            Some("BadChecksum { stored: 1, computed: 2 }")
        );
    }

    #[test]
    fn host_loop_falls_back_on_garbage() {
        let t = host_run(
            b"not a policy",
            PendulumState {
                th: 3.0,
                thdot: 0.0,
            },
        );
        assert_eq!(t.fallback_steps, MAX_EPISODE_STEPS);
        assert!(t.actions.iter().all(|a| *a == 0.0));
    }
}
