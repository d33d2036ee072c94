#!/usr/bin/env bash
# One prepared run on a GPU machine (docs/benchmarks.md, "On a GPU"): the MNIST benchmark, one short
# training run through the CLI, then the tests of the JAX dynamics against the float64 NumPy reference,
# all with the code as it is (no GPU-specific path). Logs go to $OUT (default ./gpu-out).
#
#   bash benchmarks/gpu_check.sh            # from the repository root, JAX with CUDA installed
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
  nproc
  $PY -c "import jax, numpy; print('jax', jax.__version__, 'numpy', numpy.__version__, jax.devices())"
} 2>&1 | tee "$OUT/env.log"

# 1. time per training image: continuous time at B = 1, 10 (the preset), 100, 1000; steady state; backprop
timeout "${BENCH_TIMEOUT:-240}" $PY benchmarks/bench_mnist.py --levers --batches 100,1000 2>&1 | tee "$OUT/bench_mnist.log"

# 2. the user's path: one epoch of mnist-dynamics --quick (embedded subset) through the CLI
timeout "${RUN_TIMEOUT:-90}" $PY -c "from microcircuit.cli import main; main()" run mnist-dynamics --quick \
  --set training.epochs=1 --out "${RUN_DIR:-/tmp/gpu-run-quick}" --overwrite 2>&1 | tr '\r' '\n' | grep -v "it/s\]$\|batch/s\]$" | tee "$OUT/run.log"

# 3. the JAX dynamics, plasticity, steady state and backprop against the float64 NumPy reference, on the GPU
timeout "${TEST_TIMEOUT:-200}" $PY -m pytest -q -p no:cacheprovider --durations=5 tests/test_transfer.py \
  tests/test_dynamics.py tests/test_plasticity.py tests/test_simulate.py tests/test_steady_state.py \
  tests/test_backprop.py 2>&1 | tee "$OUT/tests.log"
date -u | tee -a "$OUT/env.log"
