//! Keel's environments against gymnasium's reference traces (../shared/reference/*.csv), and the
//! trace replayer's error reporting.
//!
//! Pendulum-v1 must match bit for bit on every column and row; MountainCarContinuous-v0 within
//! 1e-6 (both are in fact compared exactly where the reference's text allows, see below).
use std::path::PathBuf;

use keel_trainer::env::{make_env, replay_trace, TraceError};

fn reference_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/reference"
    ))
}

/// The Keel env id for a reference file name (`<gym-id>_seed<S>_<actions>.csv`).
fn env_for(file: &str) -> &'static str {
    if file.starts_with("pendulum-v1") {
        "pendulum"
    } else if file.starts_with("mountaincarcontinuous-v0") {
        "mountaincar"
    } else {
        panic!("no Keel env for reference trace {file}")
    }
}

/// The references, sorted; the directory must hold at least the three traces we were given.
fn references() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(reference_dir())
        .expect("reference directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .map(|p| {
            let name = p
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&p).expect("read trace");
            (name, text)
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 3,
        "expected the reference traces in {:?}",
        reference_dir()
    );
    files
}

fn table(csv: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    let header = lines
        .next()
        .expect("header")
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let rows = lines
        .map(|l| l.split(',').map(|s| s.trim().to_string()).collect())
        .collect();
    (header, rows)
}

/// Compares one field: obs/action columns as f32, t/flags as integers, the rest as f64.
/// `tol` 0 means bit-exact.
fn check_field(file: &str, row: usize, col: &str, want: &str, got: &str, tol: f64) {
    let ctx = || format!("{file} row {row} column {col}: reference {want}, keel {got}");
    if col == "t" || col == "terminated" || col == "truncated" {
        assert_eq!(
            want.parse::<i64>().ok(),
            got.parse::<i64>().ok(),
            "{}",
            ctx()
        );
        return;
    }
    let is_f32 = col.starts_with("obs") || col.starts_with("next_obs") || col.starts_with("action");
    let (w, g) = if is_f32 {
        (
            f64::from(want.parse::<f32>().expect("f32")),
            f64::from(got.parse::<f32>().expect("f32")),
        )
    } else {
        (
            want.parse::<f64>().expect("f64"),
            got.parse::<f64>().expect("f64"),
        )
    };
    if tol == 0.0 {
        assert_eq!(w.to_bits(), g.to_bits(), "{}", ctx());
    } else {
        assert!((w - g).abs() <= tol, "{} (diff {:e})", ctx(), (w - g).abs());
    }
}

#[test]
fn replays_match_every_reference_row() {
    for (file, text) in references() {
        let env = env_for(&file);
        let out = replay_trace(env, &text).unwrap_or_else(|e| panic!("{file}: {e}"));
        let (want_h, want_rows) = table(&text);
        let (got_h, got_rows) = table(&out);
        assert_eq!(want_h, got_h, "{file}: header");
        assert_eq!(want_rows.len(), got_rows.len(), "{file}: row count");
        let tol = if env == "pendulum" { 0.0 } else { 1e-6 };
        for (r, (want, got)) in want_rows.iter().zip(&got_rows).enumerate() {
            assert_eq!(want.len(), got.len(), "{file} row {r}: field count");
            for ((col, w), g) in want_h.iter().zip(want).zip(got) {
                // MountainCar's reference prints its f32 state the numpy-float32 way ("-0.4726136"),
                // which is not the f64 Keel holds; the 1e-6 tolerance covers it.
                check_field(&file, r, col, w, g, tol);
            }
        }
    }
}

/// MountainCar is exact too where the text allows: observations bit-exact as f32, and the state
/// columns equal once both sides are rounded to f32 (rows after the first hold f32 states).
#[test]
fn mountaincar_is_exact_in_f32() {
    for (file, text) in references()
        .into_iter()
        .filter(|(f, _)| env_for(f) == "mountaincar")
    {
        let out = replay_trace("mountaincar", &text).expect("replay");
        let (h, want_rows) = table(&text);
        let (_, got_rows) = table(&out);
        for (r, (want, got)) in want_rows.iter().zip(&got_rows).enumerate() {
            for ((col, w), g) in h.iter().zip(want).zip(got) {
                if col.contains("state") && !(r == 0 && col.starts_with("state")) {
                    let (w, g) = (
                        w.parse::<f32>().expect("f32"),
                        g.parse::<f32>().expect("f32"),
                    );
                    assert_eq!(w.to_bits(), g.to_bits(), "{file} row {r} {col}: {w} vs {g}");
                } else {
                    check_field(
                        &file,
                        r,
                        col,
                        w,
                        g,
                        if col == "reward" { 1e-12 } else { 0.0 },
                    );
                }
            }
        }
    }
}

/// Stepping the env directly (no CSV) reproduces the reference rewards and observations.
#[test]
fn env_api_reproduces_the_pendulum_trace() {
    let (file, text) = references()
        .into_iter()
        .find(|(f, _)| f.starts_with("pendulum"))
        .expect("pendulum trace");
    let (h, rows) = table(&text);
    let idx = |name: &str| h.iter().position(|c| c == name).expect("column");
    let mut env = make_env("pendulum").expect("env");
    let mut obs = [0.0f32; 3];
    let first = rows.first().expect("rows");
    let s0: Vec<f64> = ["state0", "state1"]
        .iter()
        .map(|c| first[idx(c)].parse().expect("f64"))
        .collect();
    env.set_state(&s0, &mut obs).expect("set_state");
    for (r, row) in rows.iter().enumerate() {
        let a: f32 = row[idx("action")].parse().expect("action");
        let out = env.step(&[a], &mut obs);
        assert_eq!(
            out.reward.to_bits(),
            row[idx("reward")].parse::<f64>().expect("reward").to_bits(),
            "{file} row {r}"
        );
        for (i, o) in obs.iter().enumerate() {
            let want: f32 = row[idx(&format!("next_obs{i}"))].parse().expect("obs");
            assert_eq!(o.to_bits(), want.to_bits(), "{file} row {r} next_obs{i}");
        }
        assert_eq!(
            out.truncated,
            row[idx("truncated")] == "1",
            "{file} row {r}"
        );
        assert!(!out.terminated);
    }
}

const GOOD: &str = "t,state0,state1,obs0,obs1,action,reward,next_state0,next_state1,next_obs0,next_obs1,terminated,truncated\n\
0,-0.5,0.0,-0.5,0,0.25,0,0,0,0,0,0,0\n\
1,0,0,0,0,0.5,0,0,0,0,0,0,0\n";

fn malformed(result: Result<String, TraceError>) -> (usize, usize, String, String) {
    match result {
        Err(TraceError::Malformed {
            line,
            column,
            name,
            message,
        }) => (line, column, name, message),
        other => panic!("expected a Malformed error, got {other:?}"),
    }
}

#[test]
fn minimal_trace_replays() {
    let out = replay_trace("mountaincar", GOOD).expect("replay");
    assert_eq!(out.lines().count(), 3);
    assert!(out.starts_with("t,state0,"));
}

#[test]
fn malformed_traces_name_line_and_column() {
    // A bad float on line 3, column 6 (action).
    let bad = GOOD.replace("1,0,0,0,0,0.5,", "1,0,0,0,0,zero,");
    let (line, column, name, message) = malformed(replay_trace("mountaincar", &bad));
    assert_eq!((line, column, name.as_str()), (3, 6, "action"), "{message}");
    let text = replay_trace("mountaincar", &bad)
        .expect_err("bad")
        .to_string();
    assert!(
        text.contains("line 3") && text.contains("column 6") && text.contains("zero"),
        "{text}"
    );

    // A short row.
    let short = GOOD.replace("0,-0.5,0.0,-0.5,0,0.25,0,0,0,0,0,0,0", "0,-0.5,0.0");
    let (line, _, _, message) = malformed(replay_trace("mountaincar", &short));
    assert_eq!(line, 2);
    assert!(message.contains("expected 13 fields, found 3"), "{message}");

    // An unknown header column.
    let unknown = GOOD.replace("reward", "rewards");
    let (line, column, name, _) = malformed(replay_trace("mountaincar", &unknown));
    assert_eq!((line, column, name.as_str()), (1, 7, "rewards"));

    // A state index the env does not have.
    let wide = GOOD.replace("next_state1", "next_state7");
    let (line, column, _, message) = malformed(replay_trace("mountaincar", &wide));
    assert_eq!((line, column), (1, 9), "{message}");

    // A missing required column.
    let no_action = "t,state0,state1\n0,-0.5,0\n";
    let (line, _, name, _) = malformed(replay_trace("mountaincar", no_action));
    assert_eq!((line, name.as_str()), (1, "action"));

    // A bad flag, and an empty file.
    let flag = GOOD.replace(",0,0\n1,", ",0,maybe\n1,");
    let (line, column, _, _) = malformed(replay_trace("mountaincar", &flag));
    assert_eq!((line, column), (2, 13));
    assert_eq!(malformed(replay_trace("mountaincar", "")).0, 1);
}

#[test]
fn untraceable_and_unknown_envs_say_so() {
    match replay_trace("fishery3", GOOD) {
        Err(TraceError::NotTraceable(m)) => {
            assert!(m.contains("fishery3") && m.contains("traceable"), "{m}")
        }
        other => panic!("expected NotTraceable, got {other:?}"),
    }
    let err = replay_trace("acrobot", GOOD)
        .expect_err("unknown env")
        .to_string();
    assert!(
        err.contains("acrobot") && err.contains("pendulum") && err.contains("fishery-noisy-obs"),
        "{err}"
    );
}

/// Keel's output is itself a valid trace that replays to the same text (floats round-trip), for
/// the references and for a cart-pole swing-up trace (Keel's own task, no gymnasium twin).
#[test]
fn replay_output_is_a_fixpoint() {
    let mut cases: Vec<(&str, String)> = references()
        .into_iter()
        .map(|(f, text)| (env_for(&f), text))
        .collect();
    let mut cartpole = String::from(
        "t,state0,state1,state2,state3,obs0,obs1,obs2,obs3,obs4,action,reward,\
         next_state0,next_state1,next_state2,next_state3,next_obs0,next_obs1,next_obs2,next_obs3,next_obs4,\
         terminated,truncated\n",
    );
    for t in 0..500 {
        let a = 10.0 * (t as f32 * 0.05).sin() * 1.2;
        let state = if t == 0 { "0.01,0,3.1,0" } else { "0,0,0,0" };
        cartpole.push_str(&format!(
            "{t},{state},0,0,0,0,0,{a},0,0,0,0,0,0,0,0,0,0,0,0\n"
        ));
    }
    cases.push(("cartpole-swingup", cartpole));
    for (env, text) in cases {
        let once = replay_trace(env, &text).unwrap_or_else(|e| panic!("{env}: {e}"));
        let twice = replay_trace(env, &once).unwrap_or_else(|e| panic!("{env}: {e}"));
        assert_eq!(once, twice, "{env}");
        if env == "cartpole-swingup" {
            let (h, rows) = table(&once);
            let trunc = h.iter().position(|c| c == "truncated").expect("column");
            let term = h.iter().position(|c| c == "terminated").expect("column");
            let ended = rows.iter().position(|r| r[trunc] == "1" || r[term] == "1");
            assert!(ended.is_some(), "cart-pole trace never ended");
        }
    }
}
