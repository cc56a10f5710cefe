//! Changing the settings of a run that continues (`keel train --resume --config FILE`).
//!
//! A checkpoint holds networks, optimizer moments, replay and model buffers whose shapes and
//! contents some keys decide; changing those keys mid-run would either fail to load or, worse,
//! load and silently mean something else. Only keys that the trainer reads afresh at every use
//! may change, and the list below names them one by one: a key added to Keel later stays fixed
//! until someone checks it and adds it here.

use super::{merge, TrainConfig};

/// Dotted keys a continued run may change. Not `mbpo.rollouts_per_step`,
/// `mbpo.rollout_len_max` or `mbpo.rollout_every`: they size the model buffer and the rollout
/// batch, which the checkpoint restores at their old size.
const RETUNABLE: &[&str] = &[
    "steps",
    "eval_every",
    "eval_episodes",
    "checkpoint_every",
    "device",
    "matmul",
    "sac.gamma",
    "sac.tau",
    "sac.actor_lr",
    "sac.critic_lr",
    "sac.alpha_lr",
    "sac.max_alpha",
    "sac.target_entropy",
    "sac.batch_size",
    "sac.updates_per_step",
    "sac.lr_final_scale",
    "sac.lr_decay_from",
    "sac.lr_decay_to",
    "sac.policy_average",
    "sac.policy_average_final_scale",
    "sac.policy_average_from",
    "lipschitz.robust",
    "lipschitz.attack",
    "lipschitz.pgd_steps",
    "lipschitz.epsilon",
    "lipschitz.lambda",
    "lipschitz.lambda_final",
    "lipschitz.lambda_from",
    "lipschitz.lambda_to",
    "lipschitz.robust_rows",
    "lipschitz.robust_on_real",
    "lipschitz.form",
    "lipschitz.measure_states",
    "mbpo.retrain_every",
    "mbpo.rollout_len_min",
    "mbpo.rollout_len_from",
    "mbpo.rollout_len_to",
    "mbpo.real_ratio",
    "mbpo.real_ratio_final",
    "mbpo.real_ratio_from",
    "mbpo.real_ratio_to",
    "mbpo.updates_per_step",
    "mbpo.select_episodes",
];

/// Every leaf key of `table` as a dotted path.
fn leaf_keys(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => leaf_keys(t, &path, out),
            _ => out.push(path),
        }
    }
}

impl TrainConfig {
    /// This config with the keys of `text` (TOML, a run's config.toml layout, any subset of
    /// keys) laid over it, for a run that continues. A key outside [`RETUNABLE`] is an error
    /// that names it, even when its value is unchanged: a file copied from another run should
    /// not pass by luck.
    pub fn retuned(&self, text: &str) -> Result<Self, String> {
        let user: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut keys = Vec::new();
        leaf_keys(&user, "", &mut keys);
        // Unknown keys and wrong types first, in serde's words (which name the field).
        let mut merged = toml::Table::try_from(self).map_err(|e| e.to_string())?;
        merge(&mut merged, user);
        let cfg: TrainConfig = merged
            .try_into()
            .map_err(|e: toml::de::Error| e.to_string())?;
        if let Some(fixed) = keys.iter().find(|k| !RETUNABLE.contains(&k.as_str())) {
            return Err(format!(
                "`{fixed}` cannot change when a run continues: it shapes what the checkpoint \
                 holds (networks, buffers, model, seed). Keys that can: {}",
                RETUNABLE.join(", ")
            ));
        }
        let averaged = |c: &TrainConfig| c.sac.policy_average > 0.0;
        if averaged(self) != averaged(&cfg) {
            return Err(format!(
                "`sac.policy_average` can change when a run continues, but not to or from 0 \
                 (the checkpoint holds the averaged actor only while it is above 0; this run's \
                 is {})",
                self.sac.policy_average
            ));
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fishery3() -> TrainConfig {
        TrainConfig::for_env("fishery3")
    }

    #[test]
    fn listed_keys_change_and_the_rest_stay() {
        let old = fishery3();
        let new = old
            .retuned("steps = 9000\n[mbpo]\nreal_ratio = 0.9\n[sac]\nmax_alpha = 0.02\n")
            .unwrap();
        assert_eq!(new.steps, 9000);
        assert_eq!(new.mbpo.real_ratio, 0.9);
        assert_eq!(new.sac.max_alpha, Some(0.02));
        let mut back = new.clone();
        back.steps = old.steps;
        back.mbpo.real_ratio = old.mbpo.real_ratio;
        back.sac.max_alpha = old.sac.max_alpha;
        assert_eq!(back, old);
    }

    #[test]
    fn a_key_that_shapes_the_checkpoint_is_named_in_the_error() {
        for (text, key) in [
            ("[sac]\ncritic_hidden = [128, 128]\n", "sac.critic_hidden"),
            ("seed = 3\n", "seed"),
            ("env = \"pendulum\"\n", "env"),
            ("[mbpo.model]\nhidden = [64]\n", "mbpo.model.hidden"),
            (
                "[lipschitz]\nspectral_norm = false\n",
                "lipschitz.spectral_norm",
            ),
            (
                "[mbpo]\nrollouts_per_step = 400\n",
                "mbpo.rollouts_per_step",
            ),
        ] {
            let e = fishery3().retuned(text).unwrap_err();
            assert!(e.contains(&format!("`{key}` cannot change")), "{e}");
        }
    }

    #[test]
    fn bad_values_and_unknown_keys_are_errors() {
        let e = fishery3()
            .retuned("[mbpo]\nreal_ratio = 2.0\n")
            .unwrap_err();
        assert!(e.contains("real_ratio"), "{e}");
        let e = fishery3()
            .retuned("[mbpo]\nreal_ratio = \"high\"\n")
            .unwrap_err();
        assert!(e.contains("real_ratio"), "{e}");
        let e = fishery3().retuned("[sac]\nmax_alfa = 0.1\n").unwrap_err();
        assert!(e.contains("max_alfa"), "{e}");
        // The averaging window may change; the average may not appear or vanish.
        let longer = fishery3()
            .retuned("[sac]\npolicy_average = 5e-6\n")
            .unwrap();
        assert_eq!(longer.sac.policy_average, 5e-6);
        let e = fishery3()
            .retuned("[sac]\npolicy_average = 0.0\n")
            .unwrap_err();
        assert!(
            e.contains("`sac.policy_average`") && e.contains("0.00002"),
            "{e}"
        );
        let pendulum = TrainConfig::for_env("pendulum");
        let e = pendulum
            .retuned("[sac]\npolicy_average = 1e-5\n")
            .unwrap_err();
        assert!(e.contains("`sac.policy_average`"), "{e}");
    }

    /// Every listed key names a field that exists: a rename must update the list.
    #[test]
    fn every_listed_key_exists() {
        let table = toml::Table::try_from(fishery3()).unwrap();
        let mut keys = Vec::new();
        leaf_keys(&table, "", &mut keys);
        for k in RETUNABLE {
            // Optional keys that are unset are absent from the table; they are known fields.
            let optional = [
                "sac.target_entropy",
                "lipschitz.lambda_final",
                "mbpo.real_ratio_final",
            ];
            assert!(keys.iter().any(|x| x == k) || optional.contains(k), "{k}");
        }
    }
}
