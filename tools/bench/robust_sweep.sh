#!/usr/bin/env bash
# The sweep behind the robust value loss's defaults: MBPO single + sn + robust on one env (Pendulum
# by default) for every (epsilon, lambda) pair and seed, then one markdown row per pair.
#
#   tools/bench/robust_sweep.sh                      (defaults below, ~4 min on 2 cores)
#   EPS="0.01 0.02" LAMBDA="0.5 1" SEEDS="0 1 2 3 4" STEPS=1500 JOBS=2 tools/bench/robust_sweep.sh
#   ENV=mountaincar STEPS=10000 EPS="0.01 0.05" LAMBDA="0.25 1 4" tools/bench/robust_sweep.sh
#
# epsilon is relative to the per-dimension state std; lambda weighs the robust term in the critic
# loss (see docs/algorithm.md). Columns: runs reaching an eval mean >= -200, the median first env
# step that does (unsolved runs count as "> STEPS"), the mean last eval, the mean of the critic's
# last measured gradient norm ||dQ/ds|| on replay states (the Lipschitz estimate) and the mean of
# its last layer bound (product of the layers' spectral norms). THRESHOLD defaults to the env's
# solved level (pendulum -200, mountaincar 90; others 0, set it). Runs stay in $OUT
# (default: a new temporary directory); finished ones are reused when $OUT is given again.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
eps_list=${EPS:-"0.005 0.02 0.05 0.1"}
lambda_list=${LAMBDA:-"0.1 0.5 2"}
seeds=${SEEDS:-"0 1 2"}
steps=${STEPS:-1500}
jobs=${JOBS:-2}
out=${OUT:-$(mktemp -d)}
env=${ENV:-pendulum}
case $env in
  pendulum) default_threshold=-200 ;;
  mountaincar) default_threshold=90 ;;
  *) default_threshold=0 ;;
esac
threshold=${THRESHOLD:-$default_threshold}

(cd "$root" && cargo build -q --release -p keel-trainer)
keel="$root/target/release/keel"

# One line per run: config file, seed, output directory.
plan=()
for eps in $eps_list; do
  for lambda in $lambda_list; do
    dir="$out/eps$eps-lambda$lambda"
    mkdir -p "$dir"
    printf '[lipschitz]\nepsilon = %s\nlambda = %s\n' "$eps" "$lambda" >"$dir/sweep.toml"
    for seed in $seeds; do
      plan+=("$dir/sweep.toml $seed $dir/seed$seed")
    done
  done
done

run_one() {
  local cfg=$1 seed=$2 dir=$3
  if [[ -f "$dir/policy.keel" ]]; then return 0; fi
  "$keel" train --env "$env" --algo mbpo --model single --lipschitz sn+robust \
    --config "$cfg" --seed "$seed" --steps "$steps" --out "$dir" --quiet >"$dir.log" 2>&1 ||
    { echo "run failed: $dir (log: $dir.log)" >&2; return 1; }
}
export -f run_one
export keel steps env
printf '%s\n' "${plan[@]}" | xargs -P "$jobs" -L 1 bash -c 'run_one "$@"' _

echo "$env, MBPO single + sn + robust, $steps env steps, seeds: $seeds"
echo
echo "| epsilon (x state std) | lambda | solved | median first step >= $threshold | mean last eval | mean last ||dQ/ds|| | mean last layer bound |"
echo "|---|---|---|---|---|---|---|"
for eps in $eps_list; do
  for lambda in $lambda_list; do
    dir="$out/eps$eps-lambda$lambda"
    firsts=() lasts=() lips=() bounds=()
    for seed in $seeds; do
      csv="$dir/seed$seed/metrics.csv"
      [[ -f $csv ]] || continue
      # eval_mean is column 3, lip_grad_mean 11, lip_layer_bound 12 (NaN before learning).
      read -r first last lip bound < <(awk -F, -v thr="$threshold" -v big="$steps" '
        NR == 1 { next }
        $3 ~ /^-?[0-9]/ { last = $3; if (first == "" && $3 + 0 >= thr) first = $1 }
        $11 ~ /^[0-9.eE+-]+$/ && $11 + 0 > 0 { lip = $11 }
        $12 ~ /^[0-9.eE+-]+$/ && $12 + 0 > 0 { bound = $12 }
        END { print (first == "" ? big + 1 : first), last, (lip == "" ? 0 : lip), (bound == "" ? 0 : bound) }' "$csv")
      firsts+=("$first") lasts+=("$last") lips+=("$lip") bounds+=("$bound")
    done
    n=${#firsts[@]}
    [[ $n -gt 0 ]] || continue
    solved=$(printf '%s\n' "${firsts[@]}" | awk -v big="$steps" '$1 <= big { c++ } END { print c + 0 }')
    median=$(printf '%s\n' "${firsts[@]}" | sort -n | awk -v big="$steps" '
      { v[NR] = $1 } END { m = v[int((NR + 1) / 2)]; print (m > big ? "> " big : m) }')
    mean_last=$(printf '%s\n' "${lasts[@]}" | awk '{ s += $1 } END { printf "%.1f", s / NR }')
    mean_lip=$(printf '%s\n' "${lips[@]}" | awk '{ s += $1 } END { printf "%.1f", s / NR }')
    mean_bound=$(printf '%s\n' "${bounds[@]}" | awk '{ s += $1 } END { printf "%.0f", s / NR }')
    echo "| $eps | $lambda | $solved/$n | $median | $mean_last | $mean_lip | $mean_bound |"
  done
done
