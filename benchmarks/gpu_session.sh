#!/usr/bin/env bash
# Every GPU check in one prepared run (for a session that is lent a GPU; about 10 minutes on one H100):
#   device run: bash benchmarks/gpu_session.sh    (results land in $OUT, or ./gpu-results without it)
# Runs without pip installs: the device image has torch 2.11 + transformers 5.17 (tests here use 5.24; carry a
# transformers 5.24 wheel per the device README if the reference side disagrees).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-results}"; mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)" | tee -a "$out/gpu.txt"
status=0
run() {  # name, timeout, command...
    local name=$1 limit=$2; shift 2
    echo "== $name"; timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"; local rc=${PIPESTATUS[0]}
    echo "== $name exit $rc"; [ "$rc" -eq 0 ] || status=1
}
run parity 150 python3 benchmarks/gpu_parity_check.py
run fp8 150 python3 benchmarks/gpu_fp8_check.py --quick
run scale 240 python3 benchmarks/gpu_scale_check.py
run bench 120 python3 benchmarks/bench_runtime.py --device cuda --json
exit $status
