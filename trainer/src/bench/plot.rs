//! The bench's SVG plots, in the size and style of a run's curve.svg ([`crate::metrics`]).
//!
//! Seeds of one config are aligned by env step (not by row number), so a failed run's partial
//! curve still lines up with the others instead of shifting them.
use std::collections::BTreeMap;

use plotters::prelude::*;

use super::Row;
use crate::error::KeelError;

/// One config's curve: per env step, the mean, min and max over the seeds that have a value.
struct Series<'a> {
    label: &'a str,
    /// Index into the config list, so a config keeps its colour across the three plots.
    color: usize,
    /// (env step, mean, min, max)
    points: Vec<(f64, f64, f64, f64)>,
}

/// Aligns runs by env step; non-finite and missing values are left out.
fn aggregate(runs: &[&[Row]], value: impl Fn(&Row) -> Option<f64>) -> Vec<(f64, f64, f64, f64)> {
    let mut by_step: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for row in runs.iter().flat_map(|r| r.iter()) {
        if let Some(v) = value(row).filter(|v| v.is_finite()) {
            by_step.entry(row.env_step).or_default().push(v);
        }
    }
    by_step
        .into_iter()
        .map(|(step, v)| {
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let min = v.iter().copied().fold(f64::INFINITY, f64::min);
            let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (step as f64, mean, min, max)
        })
        .collect()
}

/// `(kind, svg)` for `<env>_<kind>.svg`: return (mean line, min..max band, and the threshold as
/// a grey line), lipschitz and wall.
pub(super) fn env_plots(
    env: &str,
    configs: &[String],
    runs: &[(String, Vec<&[Row]>)],
    threshold: Option<f64>,
) -> Result<Vec<(&'static str, String)>, KeelError> {
    type Value = fn(&Row) -> Option<f64>;
    let kinds: [(&str, &str, &str, Value, bool, SeriesLabelPosition); 3] = [
        (
            "return",
            "evaluation return (mean over seeds, min..max band)",
            "return",
            |r| Some(r.eval_mean),
            true,
            SeriesLabelPosition::LowerRight,
        ),
        (
            "lipschitz",
            "critic mean ||dQ/ds|| (mean over seeds)",
            "mean ||dQ/ds||",
            |r| r.lip_grad_mean,
            false,
            SeriesLabelPosition::UpperLeft,
        ),
        (
            "wall",
            "wall time (mean over seeds)",
            "wall s",
            |r| Some(r.wall_s),
            false,
            SeriesLabelPosition::UpperLeft,
        ),
    ];
    let mut out = Vec::new();
    for (kind, title, y_desc, value, band, legend) in kinds {
        let series: Vec<Series> = runs
            .iter()
            .map(|(config, rows)| Series {
                label: config,
                color: configs.iter().position(|c| c == config).unwrap_or(0),
                points: aggregate(rows, value),
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        let level = if band { threshold } else { None };
        let svg = chart_svg(
            &format!("{env}: {title}"),
            y_desc,
            &series,
            band,
            level,
            legend,
        )
        .map_err(|e| KeelError::internal(format!("plotting {env}_{kind}.svg failed: {e}")))?;
        out.push((kind, svg));
    }
    Ok(out)
}

fn chart_svg(
    title: &str,
    y_desc: &str,
    series: &[Series],
    band: bool,
    level: Option<f64>,
    legend: SeriesLabelPosition,
) -> Result<String, Box<dyn std::error::Error>> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let points = || series.iter().flat_map(|s| s.points.iter());
        let x_max = points().map(|p| p.0).fold(1.0, f64::max);
        let (lo, hi) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            if band {
                (lo.min(p.2), hi.max(p.3))
            } else {
                (lo.min(p.1), hi.max(p.1))
            }
        });
        let (lo, hi) = level.map_or((lo, hi), |l| (lo.min(l), hi.max(l)));
        let (lo, hi) = match (lo.is_finite(), hi > lo) {
            (true, true) => (lo, hi),
            (true, false) => (lo - 1.0, lo + 1.0),
            _ => (-1.0, 1.0),
        };
        let pad = 0.05 * (hi - lo);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .margin_right(24)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..x_max, (lo - pad)..(hi + pad))?;
        chart
            .configure_mesh()
            .x_desc("env steps")
            .y_desc(y_desc)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()?;
        if let Some(l) = level {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(0.0, l), (x_max, l)],
                BLACK.mix(0.4),
            )))?;
        }
        for s in series {
            let color = Palette99::pick(s.color);
            if band {
                let area: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .map(|p| (p.0, p.3))
                    .chain(s.points.iter().rev().map(|p| (p.0, p.2)))
                    .collect();
                chart.draw_series(std::iter::once(Polygon::new(area, color.mix(0.15))))?;
            }
            let line = color.stroke_width(2);
            chart
                .draw_series(
                    LineSeries::new(s.points.iter().map(|p| (p.0, p.1)), line).point_size(2),
                )?
                .label(s.label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], line));
        }
        if !series.is_empty() {
            chart
                .configure_series_labels()
                .position(legend)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }
        root.present()?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(env_step: usize, eval_mean: f64) -> Row {
        Row {
            env_step,
            wall_s: env_step as f64 / 100.0,
            eval_mean,
            eval_std: 0.0,
            lip_grad_mean: None,
            lip_grad_max: None,
            lip_layer_bound: None,
            model_s: None,
        }
    }

    #[test]
    fn seeds_align_by_env_step_and_plots_render() {
        let a = [row(250, -1000.0), row(500, -200.0)];
        let b = [row(250, -800.0)];
        let agg = aggregate(&[&a, &b], |r| Some(r.eval_mean));
        assert_eq!(
            agg,
            vec![
                (250.0, -900.0, -1000.0, -800.0),
                (500.0, -200.0, -200.0, -200.0)
            ]
        );
        let configs = vec!["sac".to_string()];
        let runs = [("sac".to_string(), vec![&a[..], &b[..]])];
        let plots = env_plots("pendulum", &configs, &runs, Some(-200.0)).unwrap();
        assert_eq!(plots.len(), 3);
        assert!(plots[0].1.contains("<svg") && plots[0].1.contains("sac"));
        // No Lipschitz values at all: an empty but valid plot.
        assert!(plots[1].1.contains("<svg"));
    }
}
