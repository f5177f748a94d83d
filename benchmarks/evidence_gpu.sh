#!/usr/bin/env bash
# Evidence rows (benchmarks/evidence_dev.py) of whole splits on one CUDA machine inside a fixed time: one process per
# model, all sharing the one GPU, each training its model (or reusing it from the cache) and recording the scans'
# raw figures. The splits named first start first; later ones run niced, so they take what CPU time is left. At the
# deadline the cached rows and trained models of the named splits are packed into OUT_DIR (rows.tar.gz, the models
# as models.tar.gz.part-* of at most 15 MiB each, and a log): unpack them into the cache of another machine with
#   cat OUT_DIR/models.tar.gz.part-* | tar xz -C runs/zoo && tar xzf OUT_DIR/rows.tar.gz -C runs/zoo
# A row not finished by the deadline is computed by a later run from the packed model (evidence_dev.py reuses it).
#   bash benchmarks/evidence_gpu.sh SECONDS OUT_DIR SPLIT [SPLIT...]   # from the repository root; DEVICE, CACHE
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS_LEFT=${1:?usage: evidence_gpu.sh SECONDS OUT_DIR SPLIT [SPLIT...]}
OUT_DIR=${2:?usage: evidence_gpu.sh SECONDS OUT_DIR SPLIT [SPLIT...]}
shift 2
[ $# -gt 0 ] || { echo "evidence_gpu.sh: name at least one split" >&2; exit 2; }
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
CACHE=${CACHE:-runs/zoo}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
deadline=$(($(date +%s) + SECONDS_LEFT))
mkdir -p "$CACHE/logs" "$OUT_DIR"

niceness=0
for split in "$@"; do
    ids=$("$PY" benchmarks/zoo.py --split "$split" --list | "$PY" -c 'import json, sys; print(*[s["id"] for s in json.load(sys.stdin)])')
    for id in $ids; do
        (
            left=$((deadline - $(date +%s)))
            [ "$left" -gt 10 ] || exit 0
            nice -n "$niceness" timeout -s INT -k 15 "$left" "$PY" benchmarks/evidence_dev.py --split "$split" \
                --allow-eval --models "$id" --device "${DEVICE:-cuda}" --threads 1 --cache "$CACHE" \
                >>"$CACHE/logs/evidence-$id.log" 2>&1 || echo "$id stopped (exit $?)"
        ) &
    done
    niceness=10
done
wait

rows=() models=()
for split in "$@"; do
    for f in "$CACHE"/evidence/"$split"-*; do [ -e "$f" ] && rows+=("evidence/${f##*/}"); done
    for d in "$CACHE"/models/"$split"-*; do
        for f in model.safetensors result.json; do [ -e "$d/$f" ] && models+=("models/${d##*/}/$f"); done
    done
done
tar czf "$OUT_DIR/rows.tar.gz" -C "$CACHE" "${rows[@]}" 2>/dev/null || tar czf "$OUT_DIR/rows.tar.gz" -T /dev/null
if [ ${#models[@]} -gt 0 ]; then
    tar czf - -C "$CACHE" "${models[@]}" | split -b 15M - "$OUT_DIR/models.tar.gz.part-"
fi
tail -n 3 "$CACHE"/logs/evidence-*.log >"$OUT_DIR/log.txt" 2>/dev/null
echo "evidence_gpu: ${#rows[@]} rows, $(printf '%s\n' "${models[@]}" | grep -c safetensors) models packed into $OUT_DIR"
