#!/usr/bin/env bash
# Every GPU check in one command (about 3-5 minutes on an H200, set-up included): the paper's ANP setting timed
# (benchmarks/anp_gpu.py, written to runs/gpu_check/anp_gpu.json) and the gpu-marked tests (CUDA against the CPU).
#   bash benchmarks/gpu_check.sh            # from the repository root, with pruneguard importable (make setup)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p runs/gpu_check
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA device: nothing to check")'
"$PY" benchmarks/anp_gpu.py --json | tee runs/gpu_check/anp_gpu.json
"$PY" benchmarks/anp_gpu.py --json --amp | tee runs/gpu_check/anp_gpu_amp.json
"$PY" -m pytest -q -p no:cacheprovider -m gpu tests/benchmarks/test_gpu.py
