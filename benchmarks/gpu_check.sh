#!/usr/bin/env bash
# The GPU device check in one go (stages in benchmarks/gpu_check.py): the three equivalence cases in parallel
# processes (their cpp and cuda builds share the cores; timings do not matter there), then the benchmarks
# alone on the machine: dense (ms/step), the DvsGesture conv network (ms/step learning and evaluating) and the
# dense network of runs/nmnist.toml at batch 1 and 72 (samples/s). Every process writes
# OUT/<stage>/gpu_check.json and gpu_check.log as it goes.
#
#   bash benchmarks/gpu_check.sh OUT_DIR [extra gpu_check.py benchmark options]
#   e.g. ... --steps 300 --conv-steps 20 --batches 1,72 --batch-steps 300   (python3 benchmarks/gpu_check.py --help)
#
# Needs brian2 and brian2cuda importable (see gpu_check.py). Exit status: 0 when every equivalence case passed.
# GPU_CHECK_CPU_ONLY=1: a dry run of the whole script without a GPU (cpp_standalone halves only).
set -u
out=${1:?usage: gpu_check.sh OUT_DIR [benchmark options]}
shift
work=${GPU_CHECK_WORK:-/tmp/decolle-gpu-check}
check="$(dirname "$0")/gpu_check.py"
dry=(); [ "${GPU_CHECK_CPU_ONLY:-0}" = 1 ] && dry=(--cpu-only)
nvidia-smi -L || echo "nvidia-smi: no GPU listed"
echo "cores: $(nproc)"

cases=$(python3 "$check" --list-cases) || { echo "gpu_check.py cannot start"; exit 2; }
pids=()
for case in $cases; do
    python3 "$check" --skip-benchmark --cases "$case" "${dry[@]}" --out "$out/eq-$case" --work "$work/eq-$case" \
        2>&1 | sed -u "s/^/[$case] /" &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for case in $cases; do
    python3 -c "import json, sys; sys.exit(0 if json.load(open(sys.argv[1])).get('passed') else 1)" \
        "$out/eq-$case/gpu_check.json" || status=1
done
echo "equivalence: $([ $status = 0 ] && echo all passed || echo FAILED)"

python3 "$check" --skip-equivalence "${dry[@]}" --out "$out/bench" --work "$work/bench" "$@" 2>&1 | sed -u "s/^/[bench] /"
exit $status
