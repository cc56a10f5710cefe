//! Evaluation records: `metrics.csv` (one row per evaluation) and `curve.svg`.
use std::path::Path;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::KeelError;
use crate::io::write_atomic;

/// One evaluation of the deterministic policy, with the training losses at that moment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    pub env_step: usize,
    pub wall_s: f64,
    pub eval_mean: f64,
    pub eval_std: f64,
    pub critic_loss: f64,
    pub actor_loss: f64,
    pub alpha: f64,
    pub entropy: f64,
    /// Extra named columns (e.g. model loss, Lipschitz estimates), in a stable order per run.
    pub extra: Vec<(String, f64)>,
}

/// Renders records as CSV text; the header comes from the first record's extra columns.
pub fn to_csv(records: &[EvalRecord]) -> String {
    let mut s =
        String::from("env_step,wall_s,eval_mean,eval_std,critic_loss,actor_loss,alpha,entropy");
    if let Some(first) = records.first() {
        for (k, _) in &first.extra {
            s.push(',');
            s.push_str(k);
        }
    }
    s.push('\n');
    for r in records {
        s.push_str(&format!(
            "{},{:.3},{},{},{},{},{},{}",
            r.env_step,
            r.wall_s,
            r.eval_mean,
            r.eval_std,
            r.critic_loss,
            r.actor_loss,
            r.alpha,
            r.entropy
        ));
        for (_, v) in &r.extra {
            s.push_str(&format!(",{v}"));
        }
        s.push('\n');
    }
    s
}

/// Writes `metrics.csv` and `curve.svg` atomically into `dir`.
pub fn write_all(dir: &Path, env: &str, records: &[EvalRecord]) -> Result<(), KeelError> {
    write_atomic(&dir.join("metrics.csv"), to_csv(records).as_bytes())?;
    let svg = curve_svg(env, records)
        .map_err(|e| KeelError::internal(format!("plotting failed: {e}")))?;
    write_atomic(&dir.join("curve.svg"), svg.as_bytes())
}

/// Eval return vs env steps, with a +-1 std band.
pub fn curve_svg(env: &str, records: &[EvalRecord]) -> Result<String, Box<dyn std::error::Error>> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let x_max = records.last().map_or(1, |r| r.env_step).max(1) as f64;
        let lo = records
            .iter()
            .map(|r| r.eval_mean - r.eval_std)
            .fold(f64::INFINITY, f64::min);
        let hi = records
            .iter()
            .map(|r| r.eval_mean + r.eval_std)
            .fold(f64::NEG_INFINITY, f64::max);
        let (lo, hi) = if lo.is_finite() && hi > lo {
            (lo, hi)
        } else {
            (-1.0, 1.0)
        };
        let pad = 0.05 * (hi - lo);
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{env}: evaluation return"), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..x_max, (lo - pad)..(hi + pad))?;
        chart
            .configure_mesh()
            .x_desc("env steps")
            .y_desc("return")
            .draw()?;
        let band: Vec<(f64, f64)> = records
            .iter()
            .map(|r| (r.env_step as f64, r.eval_mean + r.eval_std))
            .chain(
                records
                    .iter()
                    .rev()
                    .map(|r| (r.env_step as f64, r.eval_mean - r.eval_std)),
            )
            .collect();
        chart.draw_series(std::iter::once(Polygon::new(band, BLUE.mix(0.15))))?;
        chart.draw_series(LineSeries::new(
            records.iter().map(|r| (r.env_step as f64, r.eval_mean)),
            &BLUE,
        ))?;
        root.present()?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_svg() {
        let recs = vec![
            EvalRecord {
                env_step: 500,
                eval_mean: -1200.0,
                eval_std: 100.0,
                ..Default::default()
            },
            EvalRecord {
                env_step: 1000,
                eval_mean: -150.0,
                eval_std: 10.0,
                extra: vec![],
                ..Default::default()
            },
        ];
        let csv = to_csv(&recs);
        assert!(csv.starts_with("env_step,wall_s,eval_mean,eval_std"));
        assert_eq!(csv.lines().count(), 3);
        let svg = curve_svg("pendulum", &recs).unwrap();
        assert!(svg.contains("<svg") && svg.contains("pendulum"));
    }
}
