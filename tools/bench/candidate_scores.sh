#!/usr/bin/env bash
# Scores every evaluated policy a training run kept (DIR/policies/step_NNNNNNN.keel) for real,
# 100 episodes each with the fixed eval seed 12345 (every candidate sees the same noise), next to
# what the run's dynamics model said of it (DIR/model_select.csv, where the run has one). This is
# how docs/benchmarks.md compares the model's choice with the best candidate and with another
# configuration's choice. The score is the env's own (`mean_score` on fishery3, the return
# elsewhere). Prints CSV; `deployed` is 1 on the model's choice (the first of equal model scores,
# as `keel select` picks it), `best` on the highest real score.
#
#   tools/bench/candidate_scores.sh --env cartpole-swingup RUN_DIR...
#   EPISODES=20 tools/bench/candidate_scores.sh --env fishery3 /tmp/runs/seed*
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
keel=${KEEL:-$root/target/release/keel}
episodes=${EPISODES:-100}
usage="usage: $0 --env ENV RUN_DIR..."
[[ ${1:-} == --env && -n ${2:-} ]] || { echo "$usage" >&2; exit 2; }
env=$2
shift 2
[[ $# -gt 0 ]] || { echo "$usage" >&2; exit 2; }
[[ -x $keel ]] || (cd "$root" && cargo build -q --release -p keel-trainer)

# The env's score where it has one ("mean_score" is null elsewhere), else the mean return.
score() {
  local json score
  json=$("$keel" eval "$1" --env "$env" --episodes "$episodes" --seed 12345 --json)
  score=$(sed -n 's/.*"mean_score":\([-0-9.e]*\).*/\1/p' <<<"$json")
  [[ -n $score ]] || score=$(sed -n 's/.*"mean_return":\([-0-9.e]*\).*/\1/p' <<<"$json")
  echo "$score"
}

echo "run,env_step,model_return,model_ended_early,eval_mean,real_score,deployed,best"
for d in "$@"; do
  shopt -s nullglob
  files=("$d"/policies/step_*.keel)
  shopt -u nullglob
  [[ ${#files[@]} -gt 0 ]] || { echo "$d: no policies/step_*.keel (not a run directory?)" >&2; exit 1; }
  rows=$(for f in "${files[@]}"; do
    step=$(basename "$f" .keel)
    step=$((10#${step#step_}))
    echo "$step,$(score "$f")"
  done)
  # Join on env_step with model_select.csv (columns by name); a run without one gets empty
  # model columns and no deployed mark.
  sel=$d/model_select.csv
  [[ -f $sel ]] || sel=/dev/null
  tmp=$(mktemp)
  echo "$rows" >"$tmp"
  awk -F, -v run="$d" -v sel="$sel" '
    FILENAME == sel && FNR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
    FILENAME == sel {
      s = $c["env_step"]; m[s] = $c["model_return"]; e[s] = $c["model_ended_early"]
      ev[s] = $c["eval_mean"]
      if (dep == "" || $c["model_return"] + 0 > m[dep] + 0) dep = s
      next
    }
    {
      n++; step[n] = $1; real[n] = $2
      if (bi == "" || $2 + 0 > real[bi] + 0) bi = n
    }
    END {
      for (i = 1; i <= n; i++) {
        s = step[i]
        printf "%s,%s,%s,%s,%s,%s,%d,%d\n", run, s, m[s], e[s], ev[s], real[i], s == dep, i == bi
      }
    }' "$sel" "$tmp"
  rm -f "$tmp"
done
