//! Replaying gymnasium reference traces through Keel's environments.
//!
//! A trace is CSV with a header naming its columns: `t, state0.., obs0.., action (or action0..),
//! reward, next_state0.., next_obs0.., terminated, truncated` (see docs/environments.md). The
//! replay sets the env's internal state from row 0's state columns, then feeds the action
//! column(s) step by step and prints the same columns as computed by Keel, so a line-by-line
//! comparison with the reference shows where an implementation drifts. Only the action columns
//! (and row 0's state) are inputs; every other column is recomputed, but must still parse.
//! Steps continue past a `terminated` row if the trace does.
//!
//! Floats print with Rust's `Display`, the shortest text that parses back to the same value:
//! state and reward columns as f64, observation and action columns as f32.
use std::fmt::Write as _;

use super::{make_env, UnknownEnv};

/// Why a trace could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error(transparent)]
    UnknownEnv(#[from] UnknownEnv),
    /// The env's steps are not a function of a settable state (e.g. stochastic ecology models).
    #[error("{0}")]
    NotTraceable(String),
    /// Bad input, located at a 1-based line and column (column 0: the line as a whole).
    #[error("line {line}, column {column} ({name}): {message}")]
    Malformed {
        line: usize,
        column: usize,
        name: String,
        message: String,
    },
}

/// What a header column holds; the index is the component number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Col {
    T,
    State(usize),
    Obs(usize),
    Action(usize),
    Reward,
    NextState(usize),
    NextObs(usize),
    Terminated,
    Truncated,
}

/// A parsed field.
#[derive(Clone, Copy, Debug)]
enum Value {
    Int,
    F64(f64),
    F32(f32),
    Bool,
}

fn malformed(line: usize, column: usize, name: &str, message: impl Into<String>) -> TraceError {
    TraceError::Malformed {
        line,
        column,
        name: name.to_string(),
        message: message.into(),
    }
}

/// `prefix<digits>` -> the number.
fn indexed(name: &str, prefix: &str) -> Option<usize> {
    let digits = name.strip_prefix(prefix)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn parse_col(name: &str) -> Option<Col> {
    Some(match name {
        "t" => Col::T,
        "action" => Col::Action(0),
        "reward" => Col::Reward,
        "terminated" => Col::Terminated,
        "truncated" => Col::Truncated,
        _ => {
            if let Some(i) = indexed(name, "next_state") {
                Col::NextState(i)
            } else if let Some(i) = indexed(name, "next_obs") {
                Col::NextObs(i)
            } else if let Some(i) = indexed(name, "state") {
                Col::State(i)
            } else if let Some(i) = indexed(name, "obs") {
                Col::Obs(i)
            } else if let Some(i) = indexed(name, "action") {
                Col::Action(i)
            } else {
                return None;
            }
        }
    })
}

/// Checks a column's component index against the env's dimensions.
fn dim_check(col: Col, state_dim: usize, obs_dim: usize, act_dim: usize) -> Result<(), String> {
    let (i, dim, what) = match col {
        Col::State(i) | Col::NextState(i) => (i, state_dim, "state values"),
        Col::Obs(i) | Col::NextObs(i) => (i, obs_dim, "observation values"),
        Col::Action(i) => (i, act_dim, "action values"),
        _ => return Ok(()),
    };
    if i < dim {
        Ok(())
    } else {
        Err(format!("index {i} out of range: the env has {dim} {what}"))
    }
}

fn parse_field(col: Col, text: &str) -> Result<Value, String> {
    let bad = |ty: &str| format!("cannot parse {text:?} as {ty}");
    Ok(match col {
        Col::T => {
            text.parse::<usize>().map_err(|_| bad("a step number"))?;
            Value::Int
        }
        Col::State(_) | Col::NextState(_) | Col::Reward => {
            Value::F64(text.parse().map_err(|_| bad("f64"))?)
        }
        Col::Obs(_) | Col::NextObs(_) | Col::Action(_) => {
            Value::F32(text.parse().map_err(|_| bad("f32"))?)
        }
        Col::Terminated | Col::Truncated => {
            match text {
                "0" | "1" | "true" | "false" | "True" | "False" => {}
                _ => return Err(bad("a flag (0 or 1)")),
            }
            Value::Bool
        }
    })
}

/// The header's names and columns, checked against the env's dimensions.
fn parse_header(
    line: usize,
    header: &str,
    dims: (usize, usize, usize),
) -> Result<(Vec<&str>, Vec<Col>), TraceError> {
    let (state_dim, obs_dim, act_dim) = dims;
    let names: Vec<&str> = header.split(',').map(str::trim).collect();
    let mut cols = Vec::with_capacity(names.len());
    for (c, name) in names.iter().enumerate() {
        let col =
            parse_col(name).ok_or_else(|| malformed(line, c + 1, name, "unknown column name"))?;
        if cols.contains(&col) {
            return Err(malformed(line, c + 1, name, "duplicate column"));
        }
        dim_check(col, state_dim, obs_dim, act_dim).map_err(|m| malformed(line, c + 1, name, m))?;
        cols.push(col);
    }
    // The inputs: the initial state and every action component.
    for i in 0..state_dim {
        if !cols.contains(&Col::State(i)) {
            return Err(malformed(
                line,
                0,
                &format!("state{i}"),
                "required column is missing",
            ));
        }
    }
    for i in 0..act_dim {
        if !cols.contains(&Col::Action(i)) {
            let name = if act_dim == 1 {
                "action".to_string()
            } else {
                format!("action{i}")
            };
            return Err(malformed(line, 0, &name, "required column is missing"));
        }
    }
    Ok((names, cols))
}

/// Every data row, each field parsed for its column.
fn parse_rows<'a>(
    lines: impl Iterator<Item = (usize, &'a str)>,
    names: &[&str],
    cols: &[Col],
) -> Result<Vec<Vec<Value>>, TraceError> {
    let mut rows = Vec::new();
    for (line, text) in lines {
        let fields: Vec<&str> = text.split(',').map(str::trim).collect();
        if fields.len() != cols.len() {
            // Point at the first missing column, or the first extra field.
            let column = fields.len().min(cols.len()) + 1;
            let name = names.get(fields.len()).copied().unwrap_or("(extra field)");
            let message = format!("expected {} fields, found {}", cols.len(), fields.len());
            return Err(malformed(line, column, name, message));
        }
        let mut row = Vec::with_capacity(cols.len());
        for (c, ((col, name), field)) in cols.iter().zip(names).zip(&fields).enumerate() {
            row.push(parse_field(*col, field).map_err(|m| malformed(line, c + 1, name, m))?);
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Replays `csv` (a reference trace) through env `env_id` and returns Keel's version of it: the
/// same header and one row per input row. Malformed input fails before anything is stepped.
pub fn replay_trace(env_id: &str, csv: &str) -> Result<String, TraceError> {
    let mut env = make_env(env_id)?;
    let state_dim = env.state().map(|s| s.len()).ok_or_else(|| {
        TraceError::NotTraceable(format!(
            "env {env_id} has no traceable internal state (its steps are stochastic)"
        ))
    })?;
    let (obs_dim, act_dim) = (env.obs_dim(), env.act_dim());

    let mut lines = csv
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty());
    let (header_line, header) = lines
        .next()
        .ok_or_else(|| malformed(1, 0, "header", "the trace is empty"))?;
    let (names, cols) = parse_header(header_line, header, (state_dim, obs_dim, act_dim))?;
    let rows = parse_rows(lines, &names, &cols)?;

    let pick = |row: &[Value], want: Col| -> Option<Value> {
        cols.iter()
            .position(|c| *c == want)
            .and_then(|i| row.get(i).copied())
    };
    let mut state = vec![0.0f64; state_dim];
    let mut obs = vec![0.0f32; obs_dim];
    if let Some(first) = rows.first() {
        for (i, s) in state.iter_mut().enumerate() {
            if let Some(Value::F64(v)) = pick(first, Col::State(i)) {
                *s = v;
            }
        }
        env.set_state(&state, &mut obs)
            .map_err(TraceError::NotTraceable)?;
    }

    let mut out = names.join(",");
    out.push('\n');
    let mut action = vec![0.0f32; act_dim];
    let mut next_obs = vec![0.0f32; obs_dim];
    for (t, row) in rows.iter().enumerate() {
        for (i, a) in action.iter_mut().enumerate() {
            if let Some(Value::F32(v)) = pick(row, Col::Action(i)) {
                *a = v;
            }
        }
        let state = env.state().unwrap_or_default();
        let step = env.step(&action, &mut next_obs);
        let next_state = env.state().unwrap_or_default();
        let fields: Vec<String> = cols
            .iter()
            .map(|col| match *col {
                Col::T => t.to_string(),
                Col::State(i) => fmt_f64(state.get(i)),
                Col::Obs(i) => fmt_f32(obs.get(i)),
                Col::Action(i) => fmt_f32(action.get(i)),
                Col::Reward => step.reward.to_string(),
                Col::NextState(i) => fmt_f64(next_state.get(i)),
                Col::NextObs(i) => fmt_f32(next_obs.get(i)),
                Col::Terminated => u8::from(step.terminated).to_string(),
                Col::Truncated => u8::from(step.truncated).to_string(),
            })
            .collect();
        let _ = writeln!(out, "{}", fields.join(","));
        obs.copy_from_slice(&next_obs);
    }
    Ok(out)
}

fn fmt_f64(v: Option<&f64>) -> String {
    v.map_or_else(String::new, f64::to_string)
}

fn fmt_f32(v: Option<&f32>) -> String {
    v.map_or_else(String::new, f32::to_string)
}
