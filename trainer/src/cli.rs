//! The `keel` command line: argument parsing and the small commands (eval, export, inspect,
//! env-trace). Training itself lives in [`crate::train`], benchmarking in [`crate::bench`].
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::config::{Algo, Device, LipschitzChoice, Matmul, ModelChoice, TrainConfig};
use crate::env::make_env;
use crate::error::KeelError;
use crate::eval::{evaluate, load_policy};
use crate::io::write_atomic;

/// Keel: model-based RL controllers for microcontrollers.
#[derive(Debug, Parser)]
#[command(name = "keel", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a controller; writes config.toml, metrics.csv, curve.svg, checkpoints, policy.keel
    /// (the final policy), policy_best.keel (the best evaluated one) and every evaluated policy
    /// in policies/ (with mbpo.select_episodes > 0 also the model's choice among them,
    /// policy_selected.keel).
    Train(TrainArgs),
    /// Evaluate a policy file on an environment.
    Eval {
        /// The .keel policy.
        policy: PathBuf,
        /// Environment id (default: the one recorded in the policy).
        #[arg(long)]
        env: Option<String>,
        #[arg(long, default_value_t = 10)]
        episodes: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write the policy of a run directory's latest checkpoint as a .keel file.
    Export {
        /// The run directory (`keel train --out DIR`).
        dir: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Score an MBPO run's evaluated policies (DIR/policies) in its dynamics model, with no env
    /// steps; writes the best to policy_selected.keel and every score to model_select.csv.
    Select {
        /// The run directory (`keel train --out DIR`).
        dir: PathBuf,
        /// Model episodes per policy (default: the run's mbpo.select_episodes, else 500).
        #[arg(long)]
        episodes: Option<usize>,
    },
    /// Show a policy file's header, dimensions, sizes and checksum status.
    Inspect {
        policy: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Benchmark configurations x seeds x envs; writes results.md, results.csv and SVG plots.
    Bench(BenchArgs),
    /// Replay a reference trace's actions through Keel's environment and print the same columns.
    EnvTrace {
        #[arg(long)]
        env: String,
        /// A trace CSV (format of shared/reference).
        #[arg(long)]
        replay: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Environment id.
    #[arg(long)]
    pub env: Option<String>,
    /// Algorithm (default mbpo).
    #[arg(long, value_enum)]
    pub algo: Option<Algo>,
    /// MBPO's dynamics model: one deterministic model (default) or the 7-model ensemble (Gaussian
    /// heads, 5 elites; the config's other mbpo.model keys apply to it).
    #[arg(long, value_enum)]
    pub model: Option<ModelChoice>,
    /// Lipschitz regularisation of the critic (default sn+robust).
    #[arg(long, value_enum)]
    pub lipschitz: Option<LipschitzChoice>,
    /// Total env steps.
    #[arg(long)]
    pub steps: Option<usize>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// A TOML config (layout of a run's config.toml); flags override it. With --resume: the
    /// keys to change for the rest of the run (learning rates, temperature, robust term,
    /// rollouts, real ratio, updates per step, ...; keys that shape the checkpoint are refused
    /// by name); the settings used so far are kept in DIR/config_until_<step>.toml.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Output directory (default runs/<env>-<algo>-seed<seed>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub device: Option<Device>,
    /// Arithmetic of large CPU matrix products: f32 (default) or bf16 (Intel AMX CPUs only;
    /// several times faster at 2x256; inputs rounded to bf16's 8-bit mantissa, so runs differ
    /// from f32 runs).
    #[arg(long, value_enum)]
    pub matmul: Option<Matmul>,
    /// Continue from the last checkpoint in the output directory, with the run's own config
    /// (--steps to train longer, --config to change some settings).
    #[arg(long)]
    pub resume: bool,
    /// No progress bar or per-evaluation lines.
    #[arg(long)]
    pub quiet: bool,
    /// Print the resolved config (the env's defaults, then --config, then the flags; with
    /// --resume, the run's own) as TOML and exit without training. Save it, edit it and pass it
    /// back with --config.
    #[arg(long)]
    pub print_config: bool,
    /// CPU threads for one training (default 1). Results are bit-identical for any value; 2
    /// makes SAC at 2x256 about 1.9 times faster; small networks gain little.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
}

/// `keel bench`: see [`crate::bench`] for the per-env step budgets and thresholds.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Runs go to DIR/runs/<env>/<config>/seed<k>/; finished runs with the same \
config are reused; interrupted ones, and finished ones of a smaller --steps, continue from their \
last checkpoint (marked \"resumed\"). Explicit flags override --quick's choices."
)]
pub struct BenchArgs {
    /// Environments, comma-separated [default: pendulum,mountaincar,cartpole-swingup,fishery3].
    #[arg(long, value_delimiter = ',', value_name = "ENVS")]
    pub envs: Vec<String>,
    /// Configurations, comma-separated: sac, mbpo-ensemble, mbpo-single-<none|sn|robust|sn+robust>
    /// [default: all six].
    #[arg(long, value_delimiter = ',', value_name = "CONFIGS")]
    pub configs: Vec<String>,
    /// Number of seeds, 0..N-1 [default: 5].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..), conflicts_with = "seed_list")]
    pub seeds: Option<u64>,
    /// Explicit seeds, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "SEEDS")]
    pub seed_list: Vec<u64>,
    /// Env steps of every run (default: the per-env budget of each configuration).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub steps: Option<u64>,
    /// Trainings run at once, each on its own single-threaded thread.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// A few minutes: pendulum, configs sac and mbpo-single-sn+robust, 2 seeds.
    #[arg(long)]
    pub quick: bool,
    /// Train nothing: write the table and plots of the runs already finished in --out (runs
    /// gathered from several benches or machines); the others are counted as missing.
    #[arg(long)]
    pub report_only: bool,
}

impl TrainArgs {
    /// The resolved config: defaults for the env, then the config file, then flags.
    pub fn resolve(&self) -> Result<TrainConfig, KeelError> {
        let mut cfg = match &self.config {
            Some(path) => TrainConfig::load(path, self.env.as_deref(), self.algo)?,
            None => TrainConfig::for_env_algo(
                self.env.as_deref().unwrap_or("pendulum"),
                self.algo.unwrap_or(Algo::Mbpo),
            ),
        };
        make_env(&cfg.env).map_err(|e| KeelError::usage(e.to_string()))?;
        if let Some(s) = self.steps {
            cfg.steps = s;
        }
        if let Some(s) = self.seed {
            cfg.seed = s;
        }
        if let Some(d) = self.device {
            cfg.device = d;
        }
        if let Some(m) = self.matmul {
            cfg.matmul = m;
        }
        apply_variant(&mut cfg, self.model, self.lipschitz);
        cfg.validate().map_err(KeelError::usage)?;
        Ok(cfg)
    }

    pub fn out_dir(&self, cfg: &TrainConfig) -> PathBuf {
        self.out.clone().unwrap_or_else(|| {
            let algo = format!("{:?}", cfg.algo).to_lowercase();
            PathBuf::from("runs").join(format!("{}-{algo}-seed{}", cfg.env, cfg.seed))
        })
    }
}

/// Applies `--model` and `--lipschitz` to a config; `None` keeps what the config says. Shared by
/// `keel train` and `keel bench`, so a bench configuration means exactly the same as the flags.
pub fn apply_variant(
    cfg: &mut TrainConfig,
    model: Option<ModelChoice>,
    lipschitz: Option<LipschitzChoice>,
) {
    match model {
        Some(ModelChoice::Ensemble) => {
            // On top of the config's other model keys (a --config's, or the env's defaults).
            cfg.mbpo.model = std::mem::take(&mut cfg.mbpo.model).mbpo_ensemble();
        }
        Some(ModelChoice::Single) => {
            cfg.mbpo.model.ensemble_size = 1;
            cfg.mbpo.model.elites = 1;
        }
        None => {}
    }
    if let Some(l) = lipschitz {
        cfg.lipschitz.set_choice(l);
    }
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, KeelError> {
    std::fs::read(path)
        .map_err(|e| KeelError::usage(format!("cannot read {what} {}: {e}", path.display())))
}

/// Runs one parsed command.
pub fn run(cli: Cli) -> Result<(), KeelError> {
    match cli.command {
        Command::Train(args) => crate::train::train_cli(&args),
        Command::Bench(args) => crate::bench::bench_cli(&args),
        Command::Eval {
            policy,
            env,
            episodes,
            seed,
            json,
        } => {
            let blob = read_file(&policy, "policy")?;
            let p = load_policy(&blob)
                .map_err(|e| KeelError::usage(format!("{}: {e}", policy.display())))?;
            let env_id = env.unwrap_or_else(|| p.metadata().env_id.to_string());
            let mut env = make_env(&env_id).map_err(|e| KeelError::usage(e.to_string()))?;
            if episodes == 0 {
                return Err(KeelError::usage("--episodes must be at least 1"));
            }
            let s = evaluate(&p, env.as_mut(), episodes, seed)?;
            if json {
                let mut v =
                    serde_json::to_value(&s).map_err(|e| KeelError::internal(e.to_string()))?;
                v["env"] = serde_json::Value::from(env_id);
                v["policy"] = serde_json::Value::from(policy.display().to_string());
                println!("{v}");
            } else {
                println!(
                    "{}: {} episodes on {env_id}: mean return {:.2} +- {:.2}{}",
                    policy.display(),
                    s.episodes,
                    s.mean_return,
                    s.std_return,
                    s.mean_score
                        .map(|x| format!(" (score {x:.3})"))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        Command::Export { dir, out } => {
            let blob = crate::train::export_from_dir(&dir)?;
            write_atomic(&out, &blob)?;
            println!("wrote {} ({} bytes)", out.display(), blob.len());
            Ok(())
        }
        Command::Select { dir, episodes } => {
            let c = crate::train::select_in_dir(&dir, episodes)?;
            println!(
                "selected: {} (model return {:.2} at env step {}; all scores in {})",
                dir.join(crate::train::SELECTED_POLICY).display(),
                c.model_return,
                c.env_step,
                dir.join(crate::train::MODEL_SELECT_CSV).display()
            );
            Ok(())
        }
        Command::Inspect { policy, json } => {
            let blob = read_file(&policy, "policy")?;
            let report = crate::inspect::inspect(&blob);
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&report)
                        .map_err(|e| KeelError::internal(e.to_string()))?
                );
            } else {
                print!("{}", report.to_text(&policy.display().to_string()));
            }
            if report.valid {
                Ok(())
            } else {
                Err(KeelError::usage(format!(
                    "{}: invalid policy: {}",
                    policy.display(),
                    report.error
                )))
            }
        }
        Command::EnvTrace { env, replay } => {
            let text = std::fs::read_to_string(&replay).map_err(|e| {
                KeelError::usage(format!("cannot read trace {}: {e}", replay.display()))
            })?;
            let out = crate::env::replay_trace(&env, &text)
                .map_err(|e| KeelError::usage(format!("{}: {e}", replay.display())))?;
            print!("{out}");
            Ok(())
        }
    }
}
