#!/usr/bin/env bash
# Quick benchmark (a few minutes on 2 cores): Pendulum, configurations x seeds, markdown table of
# the first env step whose 10-episode deterministic eval mean is >= -200, the wall seconds to get
# there, the final eval, the measured critic smoothness (mean ||dQ/ds||) and model-side seconds.
#
#   tools/bench/pendulum_quick.sh [SEEDS...]        (default seeds 0 1 2)
#   CONFIGS="sac mbpo-single-sn+robust" tools/bench/pendulum_quick.sh 0 1 2 3 4
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
seeds=("$@")
[[ ${#seeds[@]} -eq 0 ]] && seeds=(0 1 2)
configs=${CONFIGS:-"sac mbpo-single-none mbpo-single-sn mbpo-single-robust mbpo-single-sn+robust mbpo-ensemble-none"}
(cd "$root" && cargo build -q --release -p keel-trainer)
keel="$root/target/release/keel"
out=$(mktemp -d)

flags_for() {
  case $1 in
    sac) echo "--algo sac --steps 5000" ;;
    mbpo-*) IFS=- read -r _ model lip <<<"$1"; echo "--algo mbpo --model $model --lipschitz $lip --steps 1500" ;;
  esac
}

echo "| config | seed | first step eval >= -200 | wall s to it | final eval | mean dQ/ds | model s | total wall s |"
echo "|---|---|---|---|---|---|---|---|"
for c in $configs; do
  for s in "${seeds[@]}"; do
    d="$out/$c-$s"
    # shellcheck disable=SC2046
    "$keel" train --env pendulum $(flags_for "$c") --seed "$s" --device cpu --out "$d" --quiet >/dev/null
    python3 - "$d/metrics.csv" "$c" "$s" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
hit = next((r for r in rows if float(r["eval_mean"]) >= -200), None)
last = rows[-1]
model = float(last.get("model_train_s") or 0) + float(last.get("model_predict_s") or 0)
print(f"| {sys.argv[2]} | {sys.argv[3]} | {hit['env_step'] if hit else '-'} | {float(hit['wall_s']):.1f} |" if hit else f"| {sys.argv[2]} | {sys.argv[3]} | - | - |", end="")
print(f" {float(last['eval_mean']):.1f} | {float(last['lip_grad_mean']):.1f} | {model:.1f} | {float(last['wall_s']):.1f} |")
PY
  done
done
