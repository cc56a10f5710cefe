#!/usr/bin/env bash
# The GPU check for a session that is lent a device machine, prepared here so the device time
# (15 minutes, machine start included) goes to running, not building. The device machine has no
# crate registry, so everything is built on this host and carried over as binaries.
#
#   tools/bench/cuda_device_check.sh prepare   # here: builds into .devbin/ (about 5 minutes)
#   then the device tool: run `bash .devbin/cuda_device_check.sh device` with carry [".devbin"]
#
# `device` runs the CUDA backend's tests (every kernel against the CPU reference,
# src/nn/cuda/tests.rs) and the CPU-vs-GPU training-step benchmark
# (trainer/examples/cuda_vs_cpu.rs), for two builds: cudarc's `cuda-12080` feature (the one
# Cargo.toml names) and `cuda-13000` (the device machines have CUDA 13; cudarc dlopens library
# names by the major version it was built for). Logs land in $OUT.
set -uo pipefail

prepare() {
  local root
  root=$(cd "$(dirname "$0")/../.." && pwd)
  cd "$root" || exit 1
  mkdir -p .devbin
  grep -qx '/.devbin/' .git/info/exclude 2>/dev/null || echo '/.devbin/' >>.git/info/exclude
  cp tools/bench/cuda_device_check.sh .devbin/
  cp trainer/Cargo.toml .devbin/Cargo.toml.orig
  trap 'cp .devbin/Cargo.toml.orig trainer/Cargo.toml' EXIT
  for v in 12080 13000; do
    sed -i "s/\"cuda-1[0-9]*\"/\"cuda-$v\"/" trainer/Cargo.toml
    local target="$root/target/cuda-$v"
    # --message-format names the test binary; the example has a fixed path.
    local tests
    tests=$(CARGO_TARGET_DIR=$target cargo test --release -p keel-trainer --features cuda --lib \
      --no-run --message-format=json 2>/dev/null |
      sed -n 's/.*"executable":"\([^"]*keel_trainer-[^"]*\)".*/\1/p' | tail -1)
    CARGO_TARGET_DIR=$target cargo build -q --release -p keel-trainer --features cuda \
      --example cuda_vs_cpu || exit 1
    [[ -n $tests ]] || { echo "no test binary for cuda-$v" >&2; exit 1; }
    cp "$tests" ".devbin/tests-$v"
    cp "$target/release/examples/cuda_vs_cpu" ".devbin/bench-$v"
    strip ".devbin/tests-$v" ".devbin/bench-$v"
  done
  ls -la .devbin
}

device() {
  cd "$(dirname "$0")" || exit 1
  local out=${OUT:-.}
  exec > >(tee "$out/log.txt") 2>&1
  date
  nvidia-smi -L
  nvidia-smi --query-gpu=driver_version --format=csv,noheader
  # NVRTC and cuBLAS may sit outside the loader's path (toolkit or pip wheels): add their folders.
  local extra="" d f
  for f in $(find / -xdev \( -name 'libnvrtc.so*' -o -name 'libcublas.so*' \) 2>/dev/null); do
    d=$(dirname "$f")
    case ":$extra:" in *":$d:"*) ;; *) extra="$extra:$d" ;; esac
  done
  export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}$extra"
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  local v rc
  for v in 12080 13000; do
    echo "=== tests, cudarc cuda-$v build"
    timeout 150 "./tests-$v" nn::cuda --test-threads=1 --nocapture 2>&1 | tee "$out/tests-$v.txt"
    echo "rc=${PIPESTATUS[0]}"
  done
  for v in 13000 12080; do
    echo "=== benchmark, cuda-$v build, KEEL_THREADS=1"
    KEEL_THREADS=1 timeout 120 "./bench-$v"
    rc=$?
    echo "rc=$rc"
    [[ $rc == 0 ]] || continue
    echo "=== benchmark, cuda-$v build, KEEL_THREADS=8"
    KEEL_THREADS=8 timeout 120 "./bench-$v"
    echo "rc=$?"
    break
  done
  date
}

case "${1:-}" in
  prepare) prepare ;;
  device) device ;;
  *) echo "usage: $0 prepare|device" >&2; exit 2 ;;
esac
