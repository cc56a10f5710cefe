//! `keel inspect`: what a policy file holds, and whether it is intact.
use keel_runtime::format::{CRC_LEN, FORMAT_VERSION, MAGIC};
use serde::Serialize;

use crate::eval::load_policy;

/// Everything `keel inspect` reports.
#[derive(Clone, Debug, Default, Serialize)]
pub struct InspectReport {
    pub valid: bool,
    /// Why the blob was rejected (empty when valid).
    pub error: String,
    pub bytes: usize,
    pub format_version: Option<u16>,
    pub crc_ok: bool,
    pub crc: Option<String>,
    pub name: String,
    pub env_id: String,
    pub keel_version: String,
    pub train_steps: u64,
    pub obs_dim: usize,
    pub act_dim: usize,
    pub layers: Vec<String>,
    pub params: usize,
    pub weight_bytes: usize,
    pub action_low: Vec<f32>,
    pub action_high: Vec<f32>,
}

/// Inspects a blob; never fails, the report says what is wrong.
pub fn inspect(blob: &[u8]) -> InspectReport {
    let mut r = InspectReport {
        bytes: blob.len(),
        ..Default::default()
    };
    if blob.len() >= 6 && blob[..4] == MAGIC {
        r.format_version = Some(u16::from_le_bytes([blob[4], blob[5]]));
    }
    if blob.len() >= 6 + CRC_LEN {
        let (body, tail) = blob.split_at(blob.len() - CRC_LEN);
        let stored = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
        let computed = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(body);
        r.crc_ok = stored == computed;
        r.crc = Some(format!("{stored:#010x}"));
    }
    match load_policy(blob) {
        Ok(p) => {
            r.valid = true;
            let m = p.metadata();
            r.name = m.name.to_string();
            r.env_id = m.env_id.to_string();
            r.keel_version = m.keel_version.to_string();
            r.train_steps = m.train_steps;
            r.obs_dim = p.obs_dim();
            r.act_dim = p.act_dim();
            r.layers = p
                .layers()
                .map(|l| format!("{}x{} {:?}", l.in_dim, l.out_dim, l.activation))
                .collect();
            r.params = p.param_count();
            r.weight_bytes = 4 * r.params;
            for i in 0..p.act_dim() {
                if let Some((lo, hi)) = p.action_bounds(i) {
                    r.action_low.push(lo);
                    r.action_high.push(hi);
                }
            }
        }
        Err(e) => r.error = e.message.trim_start_matches("invalid policy: ").to_string(),
    }
    r
}

impl InspectReport {
    /// Human-readable report.
    pub fn to_text(&self, path: &str) -> String {
        let mut s = format!("{path}: {} bytes\n", self.bytes);
        let version = match self.format_version {
            Some(v) if v == FORMAT_VERSION => format!("{v}"),
            Some(v) => format!("{v} (this keel reads {FORMAT_VERSION})"),
            None => "unknown (not a Keel policy)".into(),
        };
        s += &format!("  format version  {version}\n");
        s += &format!(
            "  crc-32          {} ({})\n",
            self.crc.as_deref().unwrap_or("-"),
            if self.crc_ok { "ok" } else { "MISMATCH" }
        );
        if !self.valid {
            s += &format!("  status          INVALID: {}\n", self.error);
            return s;
        }
        s += &format!("  name            {}\n", self.name);
        s += &format!("  env             {}\n", self.env_id);
        s += &format!("  written by      keel {}\n", self.keel_version);
        s += &format!("  trained for     {} env steps\n", self.train_steps);
        s += &format!(
            "  obs dim         {}\n  act dim         {}\n",
            self.obs_dim, self.act_dim
        );
        s += &format!("  layers          {}\n", self.layers.join(", "));
        s += &format!(
            "  parameters      {} ({} bytes of f32)\n",
            self.params, self.weight_bytes
        );
        s += &format!(
            "  action bounds   low {:?} high {:?}\n",
            self.action_low, self.action_high
        );
        s += "  status          ok\n";
        s
    }
}
