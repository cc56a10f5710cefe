#!/usr/bin/env bash
# Recompute the seed-by-seed comparisons that docs/benchmarks.md's targets table quotes (the
# default against the ensemble-7 baseline, cartpole-swingup and fishery3) from the committed
# candidate CSVs, and fail if the doc's figures differ from what the data give. Run by CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
DOC=docs/benchmarks.md
B=docs/bench

echo "cartpole-swingup, 50,000 steps: the default's deployed policy against the ensemble's own choice"
python3 tools/bench/paired_compare.py --check-doc $DOC --a mbpo-single-sn+robust --b mbpo-ensemble \
  $B/cartpole-swingup_session3[789]_model_select.csv $B/cartpole-swingup_session*_ensemble_heldout.csv

echo; echo "fishery3, 120,000 steps: the same"
python3 tools/bench/paired_compare.py --check-doc $DOC --a default --b ensemble \
  default=$B/fishery3_session32_model_select.csv default=$B/fishery3_session34_model_select.csv \
  default=$B/fishery3_session35_model_select.csv default=$B/fishery3_session36_model_select.csv \
  ensemble=$B/fishery3_session35_ensemble_seed0.csv ensemble=$B/fishery3_session40_ensemble.csv \
  ensemble=$B/fishery3_session41_ensemble.csv ensemble=$B/fishery3_session42_ensemble_seed5.csv \
  ensemble=$B/fishery3_session43_ensemble_seed6.csv ensemble=$B/fishery3_session44_ensemble_seed7.csv \
  ensemble=$B/fishery3_session45_ensemble_seed8.csv ensemble=$B/fishery3_session46_ensemble_seed9.csv
