#!/usr/bin/env bash
# Scores fishery3 training runs the way docs/benchmarks.md does: the final and the best policy
# of each run directory, 100 episodes each with the fixed eval seed 12345 (so every policy sees
# the same noise), and the run's last Lipschitz measurements; where the run has one (training
# with mbpo.select_episodes > 0, or `keel select DIR`), also the policy its dynamics model chose.
# Prints CSV.
#
#   tools/bench/fishery3_scores.sh RUN_DIR...
#   tools/bench/fishery3_scores.sh DIR/runs/fishery3/mbpo-single-sn+robust/seed*
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
keel=${KEEL:-$root/target/release/keel}
[[ -x $keel ]] || (cd "$root" && cargo build -q --release -p keel-trainer)
[[ $# -gt 0 ]] || { echo "usage: $0 RUN_DIR..." >&2; exit 2; }

score() {
  "$keel" eval "$1" --env fishery3 --episodes 100 --seed 12345 --json |
    sed -n 's/.*"mean_score":\([-0-9.e]*\).*/\1/p'
}

echo "run,env_steps,score_final,score_best,best_step,last_lip_grad_mean,last_lip_layer_bound,wall_s,score_selected,selected_step"
for d in "$@"; do
  for f in policy.keel policy_best.keel metrics.csv; do
    [[ -f $d/$f ]] || { echo "$d: no $f (not a finished fishery3 run?)" >&2; exit 1; }
  done
  final=$(score "$d/policy.keel")
  best=$(score "$d/policy_best.keel")
  # Columns by name: metrics.csv gains columns over time.
  tail=$(awk -F, '
    NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
    $c["eval_score"] > m || bs == "" { m = $c["eval_score"]; bs = $c["env_step"] }
    { last = $0 }
    END {
      split(last, v, ",")
      printf "%s,%s,%.1f,%.0f,%.0f", v[c["env_step"]], bs, v[c["lip_grad_mean"]],
        v[c["lip_layer_bound"]], v[c["wall_s"]]
    }' "$d/metrics.csv")
  IFS=, read -r steps best_step grad bound wall <<<"$tail"
  selected="" selected_step=""
  if [[ -f $d/policy_selected.keel ]]; then
    selected=$(printf '%.2f' "$(score "$d/policy_selected.keel")")
    selected_step=$("$keel" inspect "$d/policy_selected.keel" --json |
      sed -n 's/.*"train_steps":\([0-9]*\).*/\1/p')
  fi
  printf '%s,%s,%.2f,%.2f,%s,%s,%s,%s,%s,%s\n' "$d" "$steps" "$final" "$best" "$best_step" "$grad" \
    "$bound" "$wall" "$selected" "$selected_step"
done
