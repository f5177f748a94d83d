#!/usr/bin/env bash
# The evaluation zoo on one CUDA machine inside a fixed time: one process per model, all sharing the one GPU, each
# running its model's defences in order of priority until the deadline. Every finished row lands in the zoo's cache
# (runs/zoo, the same keys as a CPU run), so an interrupted run resumes where it stopped and
# `python benchmarks/zoo.py --split eval --defenses ... --out-json ...` afterwards reads the rows back. Models and
# rows computed on another machine travel as runs/carry-SPLIT (`zoo.py --split SPLIT --pack runs/carry-SPLIT`, no
# checkpoints; carry that folder) and are copied into runs/zoo first, never over a file already there.
#   bash benchmarks/zoo_gpu.sh SECONDS [SPLIT]    # from the repository root, pruneguard importable; DEVICE=cuda:N
# Phases, per model: the default recipe and ANP as published (1% clean data); FT-SAM, SAU, I-BAU; the default recipe
# with 0.1% clean data; FT, Fine-Pruning, NAD. A phase cut by the deadline keeps the rows it finished.
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS_LEFT=${1:?usage: zoo_gpu.sh SECONDS [SPLIT]}
SPLIT=${2:-eval}
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
deadline=$(($(date +%s) + SECONDS_LEFT))
if [ -d "runs/carry-$SPLIT" ]; then  # models and rows trained elsewhere: python benchmarks/zoo.py --split S --pack runs/carry-S
    mkdir -p runs/zoo && cp -rn "runs/carry-$SPLIT/." runs/zoo/
fi
n=$("$PY" benchmarks/zoo.py --split "$SPLIT" --list | "$PY" -c 'import json, sys; print(len(json.load(sys.stdin)))')
mkdir -p runs/zoo/logs
phases=("default,paper 0.01" "ft_sam,sau,i_bau 0.01" "default 0.001" "ft,fine_pruning,nad 0.01")

part() {
    local i=$1 ph defenses fraction left
    for ph in "${phases[@]}"; do
        read -r defenses fraction <<<"$ph"
        left=$((deadline - $(date +%s)))
        [ "$left" -gt 10 ] || return 0
        timeout -s INT -k 15 "$left" "$PY" benchmarks/zoo.py --split "$SPLIT" --part "$i/$n" --defenses "$defenses" \
            --clean-fraction "$fraction" --device "${DEVICE:-cuda}" --threads 1 --cache runs/zoo \
            >>"runs/zoo/logs/$SPLIT-$i.log" 2>&1 || echo "part $i: $defenses at $fraction stopped (exit $?)"
    done
}

for i in $(seq 0 $((n - 1))); do part "$i" & done
wait
echo "zoo_gpu: $(ls runs/zoo/rows 2>/dev/null | wc -l) rows, $(ls -d runs/zoo/models/"$SPLIT"-* 2>/dev/null | wc -l) models"
