#!/usr/bin/env bash
# One CSV row per training run directory, read from its metrics.csv: the final evaluation, the
# evaluation at env step $AT (default 10000), the mean of the last three evaluations (a final
# eval is one snapshot of a policy that still moves), the lowest evaluation after $AT, the
# critic's last measured slope at the data (mean and max over replay states) and layer bound,
# the model time and the wall time.
# For runs made with `keel train --config` that `keel bench` cannot table.
#
#   tools/bench/run_summary.sh RUN_DIR...
#   AT=20000 tools/bench/run_summary.sh /tmp/runs/seed*
set -euo pipefail
at=${AT:-10000}
[[ $# -gt 0 ]] || { echo "usage: $0 RUN_DIR..." >&2; exit 2; }

echo "run,env_steps,eval_final,eval_at_$at,eval_last3_mean,eval_min_after_$at,lip_grad_mean,lip_grad_max,lip_layer_bound,model_s,wall_s"
for d in "$@"; do
  [[ -f $d/metrics.csv ]] || { echo "$d: no metrics.csv (not a run directory?)" >&2; exit 1; }
  # Columns by name: metrics.csv gains columns over time.
  awk -F, -v at="$at" -v run="$d" '
    function f(x) { return x == "" ? "" : sprintf("%.1f", x) }
    NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
    $c["eval_mean"] != "" {
      n++; e[n] = $c["eval_mean"]
      if ($c["env_step"] == at) ea = e[n]
      if ($c["env_step"] > at && (min == "" || e[n] < min)) min = e[n]
      last = $0
    }
    END {
      if (n == 0) { print run ": no evaluations" > "/dev/stderr"; exit 1 }
      split(last, v, ",")
      k = n < 3 ? n : 3
      for (i = n - k + 1; i <= n; i++) s += e[i]
      printf "%s,%s,%.1f,%s,%.1f,%s,%.1f,%.1f,%.0f,%.1f,%.0f\n", run, v[c["env_step"]], e[n], f(ea),
        s / k, f(min), v[c["lip_grad_mean"]], v[c["lip_grad_max"]], v[c["lip_layer_bound"]],
        v[c["model_train_s"]] + v[c["model_predict_s"]], v[c["wall_s"]]
    }' "$d/metrics.csv"
done
