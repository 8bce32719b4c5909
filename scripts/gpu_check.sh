#!/usr/bin/env bash
# The GPU check, one command on a CUDA machine (about 5 minutes on an H100; each step has a time limit, 8 min in all):
#
#   scripts/gpu_check.sh            # from the repository root or anywhere
#   scripts/gpu_check.sh --dry-run  # no GPU needed: every step on the CPU with a reduced model, to check the script
#   scripts/gpu_check.sh --quick    # the same steps with fewer frames and workers 1,2,4, in about 5 minutes
#
# Steps; a failing step is reported and the others still run:
#   env        versions, the GPU, CUDA visible to torch
#   tests      the CUDA-marked tests (pytest -m cuda: the Triton render vs the reference, the engine on CUDA)
#   inputs     the real-cost stand-in (DensePose R-CNN R50, random weights) generated here (and a clip, if none)
#   encode     `densevid encode --device cuda` end to end, fp32 and --half, lossless, and the label agreement
#              of --half with fp32 (scripts/compare_hints.py)
#   bench      scripts/bench.py on the hub-like stand-in, fp32 and fp16, resolution 512: the model alone (the
#              TorchScript file at N streams, the native model at B = 1, 4, 8, 16) and
#              encode_video for N = 1..4 workers with the GPU-busy fraction, `densevid encode` as a whole process
#
# Needs torch, torchvision, triton, numpy, opencv, click, tqdm and huggingface_hub installed. PyAV (and
# pytest) come from wheels carried in .whl/ (git-ignored; README, "GPU check"), installed without network
# into a temporary directory. The input is ../shared/data/dance_576x1024.mp4 or .bench/dance_576x1024.mp4
# when present, else a generated clip.
#
# The report goes to $OUT/gpu_check.txt when OUT is set, else ./gpu_check.txt; each step's log beside it.
# Exit code: 0 when every step passed, 1 otherwise.
set -euo pipefail

DRY_RUN=0
QUICK=0
case "${1:-}" in
    --dry-run) DRY_RUN=1 ;;
    --quick) QUICK=1 ;;
    "") ;;
    *) echo "usage: $0 [--dry-run | --quick]" >&2; exit 2 ;;
esac

REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
DEST=${OUT:-$PWD}
mkdir -p "$DEST"
DEST=$(cd "$DEST" && pwd)
REPORT="$DEST/gpu_check.txt"
WORK=$(mktemp -d /tmp/densevid-gpu-check.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
STARTED=$SECONDS

# densevid importable under its own name whatever this checkout's folder is called
mkdir -p "$WORK/path"
ln -s "$REPO" "$WORK/path/densevid"
export PYTHONPATH="$WORK/path${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G "$REPO/.whl/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --target "$WORK/site" "$REPO"/.whl/*.whl
    export PYTHONPATH="$WORK/site:$PYTHONPATH"
fi

if [ "$DRY_RUN" = 1 ]; then
    DEVICE=cpu; FRAMES=4; ENCODE_FRAMES=4; MODEL_FRAMES=2; NAIVE_FRAMES=1; WORKERS=1,2; BATCHES=1,2; MODEL_SIZE=reduced
else
    DEVICE=cuda; FRAMES=160; ENCODE_FRAMES=120; MODEL_FRAMES=32; NAIVE_FRAMES=8; WORKERS=1,2,4; BATCHES=1,4,8,16
    MODEL_SIZE=full
fi
# time limits per step (seconds): env, tests, inputs, encode, bench
LIMITS=(30 100 60 90 200)
if [ "$QUICK" = 1 ]; then
    FRAMES=64; ENCODE_FRAMES=32; MODEL_FRAMES=16; NAIVE_FRAMES=4; WORKERS=1,4; BATCHES=1,8
    LIMITS=(20 75 45 60 110)
fi
MODEL="$WORK/rcnn_r50.torchscript"
CLIP=""
for candidate in "$REPO/../shared/data/dance_576x1024.mp4" "$REPO/.bench/dance_576x1024.mp4"; do
    if [ -f "$candidate" ] && [ "$DRY_RUN" = 0 ]; then CLIP=$candidate; break; fi  # the dry run: a short generated clip
done
export PY REPO WORK DEVICE FRAMES ENCODE_FRAMES MODEL_FRAMES NAIVE_FRAMES WORKERS MODEL_SIZE MODEL CLIP

echo "| step | result | seconds | last line of its log |" > "$WORK/steps.md"
echo "|---|---|---:|---|" >> "$WORK/steps.md"
FAILED=0

# step NAME SECONDS FUNCTION: run with a time limit, log to $DEST/gpu_check_NAME.log, record the result
step() {
    local name=$1 limit=$2
    shift 2
    local log="$DEST/gpu_check_$name.log" t0=$SECONDS rc=0 result last
    echo "== $name (limit ${limit}s)" >&2
    # the function runs in a child bash (exported below) so that timeout stops it, its children included
    timeout --kill-after=15 "$limit" bash -c 'set -euo pipefail; "$@"' step "$@" > "$log" 2>&1 || rc=$?
    case $rc in
        0) result=ok ;;
        124|137) result="TIMEOUT after ${limit}s"; FAILED=1 ;;
        *) result="FAILED (exit $rc)"; FAILED=1 ;;
    esac
    last=$(grep -v '^[[:space:]]*$' "$log" | tail -n 1 | tr '|' '/' | cut -c1-160 || true)
    echo "| $name | $result | $((SECONDS - t0)) | $last |" >> "$WORK/steps.md"
    echo "   $result ($((SECONDS - t0)) s)" >&2
}

env_info() {
    "$PY" - <<'PYTHON'
import importlib, os, platform
import torch
print("python", platform.python_version(), "| torch", torch.__version__, "| CUDA", torch.version.cuda,
      "| available", torch.cuda.is_available(), "| cpus", os.cpu_count())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("GPU", p.name, f"{p.total_memory / 2**30:.0f} GiB", "| devices", torch.cuda.device_count())
for name in ("torchvision", "triton", "av", "cv2", "numpy", "numba", "pytest", "densevid"):
    try:
        module = importlib.import_module(name)
        print(name, getattr(module, "__version__", ""), getattr(module, "__file__", ""))
    except Exception as error:  # noqa: BLE001 - a missing package is what this step reports
        print(name, "MISSING:", type(error).__name__, error)
PYTHON
}

cuda_tests() {
    "$PY" -m pytest -q -m cuda -rA -s -p no:cacheprovider --continue-on-collection-errors tests/
}

make_inputs() {
    "$PY" - <<'PYTHON'
import os, sys, time
from densevid.pipeline.models import save_standin_rcnn
t0 = time.perf_counter()
# reduced: a quarter of every channel count (the dry run); full: the hub files' size
kwargs = dict(width=0.25) if os.environ["MODEL_SIZE"] == "reduced" else {}
print(save_standin_rcnn(os.environ["MODEL"], "tuple", 50, **kwargs), f"built in {time.perf_counter() - t0:.0f} s",
      os.environ["MODEL_SIZE"])
sys.path.insert(0, os.path.join(os.environ["REPO"], "tests"))
sys.path.insert(0, os.path.join(os.environ["REPO"], "scripts"))
from bench import capped_clip
from support.clips import make_clip, synthetic_frames
work = os.environ["WORK"]
clip = os.environ["CLIP"] or make_clip(os.path.join(work, "generated.mp4"),
                                        synthetic_frames(int(os.environ["FRAMES"]), 1024, 576), codec="libx264")
print("input:", clip, "" if os.environ["CLIP"] else "(generated)")
path, n = capped_clip(clip, int(os.environ["ENCODE_FRAMES"]), os.path.join(work, "encode_input.mp4"))
print("encode input:", path, n, "frames")
PYTHON
}

encode_both() {
    local args=("$WORK/encode_input.mp4" --model "$MODEL" --device "$DEVICE" --lossless --overwrite -q)
    local t0=$SECONDS
    "$PY" -m densevid.pipeline.cli encode "${args[@]}" -o "$WORK/fp32.mkv"
    echo "fp32: $((SECONDS - t0)) s (whole process, start-up included)"
    t0=$SECONDS
    "$PY" -m densevid.pipeline.cli encode "${args[@]}" --half -o "$WORK/half.mkv"
    echo "--half: $((SECONDS - t0)) s (whole process, start-up included)"
    "$PY" "$REPO/scripts/compare_hints.py" "$WORK/fp32.mkv" "$WORK/half.mkv"
}

run_bench() {
    # float32 and float16 rows side by side: the TorchScript file at N streams, the native model at B
    "$PY" "$REPO/scripts/bench.py" --device "$DEVICE" --model "$MODEL" \
        --input "${CLIP:-$WORK/generated.mp4}" --workers-list "$WORKERS" --batch-list "$BATCHES" --frames "$FRAMES" \
        --model-frames "$MODEL_FRAMES" --naive-frames "$NAIVE_FRAMES" --skip-io-bound --skip-resolutions \
        --out "$WORK/bench.md"
}

write_report() {
    {
        echo "# densevid GPU check$([ "$DRY_RUN" = 1 ] && echo ' (dry run: CPU, reduced model)')$([ "$QUICK" = 1 ] && echo ' (--quick)')"
        echo ""
        cat "$WORK/steps.md"
        echo ""
        echo '```'
        cat "$DEST/gpu_check_env.log" 2>/dev/null || true
        echo '```'
        echo ""
        echo "## Triton render vs the reference, and the other CUDA tests"
        echo '```'
        grep -E "agreement|passed|failed|skipped|rror" "$DEST/gpu_check_tests.log" 2>/dev/null | tail -n 20 || true
        echo '```'
        echo ""
        echo "## densevid encode --device $DEVICE, fp32 and --half (lossless; labels compared)"
        echo '```'
        cat "$DEST/gpu_check_encode.log" 2>/dev/null || true
        echo '```'
        echo ""
        echo "## Benchmark: scripts/bench.py, hub-like stand-in R50 (tuple), resolution 512, float32 and float16"
        cat "$WORK/bench.md" 2>/dev/null || echo "(no benchmark table yet: see gpu_check_bench.log)"
        echo ""
        echo "total: $((SECONDS - STARTED)) s"
    } > "$REPORT"
}

export -f env_info cuda_tests make_inputs encode_both run_bench
cd "$REPO"
# the limits add up to 8 minutes (--quick: 5); the report is rewritten after every step
step env "${LIMITS[0]}" env_info; write_report
step tests "${LIMITS[1]}" cuda_tests; write_report
step inputs "${LIMITS[2]}" make_inputs; write_report
if [ -f "$MODEL" ]; then
    step encode "${LIMITS[3]}" encode_both; write_report
    step bench "${LIMITS[4]}" run_bench; write_report
fi
cat "$REPORT"
exit $FAILED
