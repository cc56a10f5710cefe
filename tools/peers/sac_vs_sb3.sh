#!/usr/bin/env bash
# Keel SAC vs Stable-Baselines3 SAC on Pendulum-v1, same machine, same sizes (2x256 actor and
# critic, batch 256, one update per env step, 1000 random warm-up steps), evaluation every 1000
# steps (10 deterministic episodes, included in wall time, as in shared/docs/peers.md).
#
#   tools/peers/sac_vs_sb3.sh [STEPS] [SEEDS...]
#
# Opt-in, never in CI: the first run creates tools/peers/.venv with stable-baselines3 and torch
# (PyPI's torch is a ~3 GB download). Set KEEL_ONLY=1 to time Keel alone. THREADS=N (default 1)
# gives both systems N threads (Keel's --threads, torch.set_num_threads). MATMUL=bf16 runs Keel's
# large products in bf16 on AMX CPUs (`matmul = "bf16"`); SB3 stays f32 either way.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
steps=${1:-5000}
shift || true
seeds=("${@:-0}")
[[ ${#seeds[@]} -eq 0 ]] && seeds=(0)

cfg=$(mktemp --suffix .toml)
cat >"$cfg" <<TOML
env = "pendulum"
algo = "sac"
eval_every = 1000
[sac]
actor_hidden = [256, 256]
critic_hidden = [256, 256]
batch_size = 256
updates_per_step = 1
learning_starts = 1000
TOML

(cd "$root" && cargo build -q --release -p keel-trainer)
echo "system,env_step,wall_s,eval_mean,eval_std"
for seed in "${seeds[@]}"; do
  out=$(mktemp -d)
  "$root/target/release/keel" train --config "$cfg" --steps "$steps" --seed "$seed" --device cpu --threads "${THREADS:-1}" --matmul "${MATMUL:-f32}" --out "$out" --quiet >/dev/null
  tail -n +2 "$out/metrics.csv" | awk -F, -v sys="keel-${MATMUL:-f32}" '{printf "%s,%s,%s,%s,%s\n", sys, $1, $2, $3, $4}'
done

if [[ -z ${KEEL_ONLY:-} ]]; then
  if [[ ! -x $here/.venv/bin/python ]]; then
    python3 -m venv "$here/.venv"
    "$here/.venv/bin/pip" install -q "stable-baselines3==2.*" "gymnasium==1.*"
  fi
  for seed in "${seeds[@]}"; do
    "$here/.venv/bin/python" "$here/sb3_sac_pendulum.py" --steps "$steps" --seed "$seed" --threads "${THREADS:-1}"
  done
fi
