#!/usr/bin/env bash
# Quick Pendulum benchmark: a thin wrapper around `keel bench` (which superseded this script's own
# loop; see `keel bench --help`). Prints the markdown table; the run directories, results.csv and
# SVG plots stay in $OUT (default: a new temporary directory).
#
#   tools/bench/pendulum_quick.sh [SEEDS...]        (default seeds 0 1 2)
#   CONFIGS="sac mbpo-single-sn+robust" tools/bench/pendulum_quick.sh 0 1 2 3 4
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
seeds=("$@")
[[ ${#seeds[@]} -eq 0 ]] && seeds=(0 1 2)
configs=${CONFIGS:-"sac mbpo-single-none mbpo-single-sn mbpo-single-robust mbpo-single-sn+robust mbpo-ensemble"}
(cd "$root" && cargo build -q --release -p keel-trainer)
out=${OUT:-$(mktemp -d)}
seed_list=$(IFS=,; echo "${seeds[*]}")
# Space-separated -> comma-separated; the old name mbpo-ensemble-none is now mbpo-ensemble.
# shellcheck disable=SC2086
config_list=$(echo $configs | tr ' ' ',' | sed 's/mbpo-ensemble-none/mbpo-ensemble/')
"$root/target/release/keel" bench --envs pendulum --configs "$config_list" \
  --seed-list "$seed_list" --out "$out"
cat "$out/results.md"
