#!/bin/bash
# The ComfyUI nodes end to end in a real ComfyUI (CPU): starts ComfyUI (without weights, then with
# stand-ins in models/densepose) and runs every step of scripts/comfy_e2e.py; one JSON line per step.
# The IMAGE drop-in first, then the VIDEO node on synthetic clips it writes into COMFYUI_DIR/input.
#
#   bash scripts/comfy_e2e.sh COMFYUI_DIR COMFYUI_PYTHON
#   DENSEVID_E2E_RSS=1 bash scripts/comfy_e2e.sh ...   also peak RSS, 20 s and 60 s of 1080p (VIDEO node),
#                                                       and the IMAGE path on shorter 1080p clips
#
# COMFYUI_DIR/custom_nodes/densevid must be this checkout (a clone or a symlink), and
# COMFYUI_DIR/input must hold the two frames scripts/comfy_e2e.py loads (IMAGES there).
# It empties COMFYUI_DIR/models/densepose and COMFYUI_DIR/output/densevid_e2e.
set -eu
C=$(cd "$1" && pwd)
PY=$2
HERE=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
# the harness node that counts the TorchScript modules alive in ComfyUI (for the free step)
PROBE="$C/custom_nodes/densevid_e2e_probe.py"
ln -sfn "$HERE/scripts/comfy_e2e_probe.py" "$PROBE"
trap 'stop; rm -rf "$WORK" "$PROBE"' EXIT
E2E=(env PYTHONPATH="$C/custom_nodes" "$PY" "$HERE/scripts/comfy_e2e.py" --comfyui "$C")

start() {
  # MALLOC_MMAP_THRESHOLD_: freed weights go back to the system, so RSS shows what /free released
  (cd "$C"; MALLOC_MMAP_THRESHOLD_=131072 HF_HOME="$WORK/hf_home" "$PY" main.py --cpu --listen 127.0.0.1 \
    --port 8188 --disable-auto-launch >"$WORK/comfy.log" 2>&1 & echo $! >"$WORK/comfy.pid")
  for _ in $(seq 1 180); do curl -s -o /dev/null http://127.0.0.1:8188/system_stats && return; sleep 1; done
  echo "ComfyUI did not start; its log:"; tail -20 "$WORK/comfy.log"; exit 1
}
stop() {
  [ -f "$WORK/comfy.pid" ] || return 0
  kill "$(cat "$WORK/comfy.pid")" 2>/dev/null || true
  while kill -0 "$(cat "$WORK/comfy.pid")" 2>/dev/null; do sleep 1; done
  rm -f "$WORK/comfy.pid"
}

rm -rf "$C/models/densepose" "$C/output/densevid_e2e"
mkdir -p "$C/models/densepose"
start
"${E2E[@]}" info
echo "== no weights anywhere, the hub as this machine reaches it"
"${E2E[@]}" missing
stop
echo "== stand-ins in models/densepose: the small r50 for parity, the real-cost r101 for interrupt and free"
PYTHONPATH="$C/custom_nodes" "$PY" -m densevid.pipeline.cli models standin "$WORK/small" >/dev/null
PYTHONPATH="$C/custom_nodes" "$PY" -m densevid.pipeline.cli models standin --real-cost "$WORK/realcost" >/dev/null
cp "$WORK/small/densepose_r50_fpn_dl.torchscript" "$WORK/realcost/densepose_r101_fpn_dl.torchscript" \
  "$C/models/densepose/"
start
"${E2E[@]}" parity --frames 16 --model-file "$C/models/densepose/densepose_r50_fpn_dl.torchscript"
"${E2E[@]}" interrupt --model densepose_r101_fpn_dl.torchscript --after 3
"${E2E[@]}" free --model densepose_r101_fpn_dl.torchscript --pid "$(cat "$WORK/comfy.pid")"
stop
echo "== the VIDEO node: LoadVideo -> DensePose Video (-> SaveVideo), against densevid encode of the same file"
R50="$C/models/densepose/densepose_r50_fpn_dl.torchscript"
start
"${E2E[@]}" clip --clip densevid_e2e.mp4 --seconds 2 --size 640x360
"${E2E[@]}" video --clip densevid_e2e.mp4 --resolution 256 --model-file "$R50"
"${E2E[@]}" save --clip densevid_e2e.mp4 --resolution 256 --model-file "$R50"
"${E2E[@]}" workflows --clip densevid_e2e.mp4
"${E2E[@]}" clip --clip densevid_e2e_long.mp4 --seconds 10 --size 640x360
"${E2E[@]}" vinterrupt --clip densevid_e2e_long.mp4 --model densepose_r101_fpn_dl.torchscript --resolution 256 \
  --after 3
stop
if [ "${DENSEVID_E2E_RSS:-0}" = 1 ]; then
  echo "== peak RSS of ComfyUI (a fresh start per run): the VIDEO node at 20 s and 60 s of 1080p, the IMAGE path"
  # an IMAGE batch of 1080p is 24.9 MB a frame (float32), twice that while GetVideoComponents stacks it:
  # the IMAGE path runs on clips short enough for this machine's memory
  for spec in "video 20" "video 60" "image 2" "image 4"; do
    set -- $spec
    start
    "${E2E[@]}" clip --clip "densevid_rss_$2s.mp4" --seconds "$2" --size 1920x1080 >/dev/null
    "${E2E[@]}" rss --clip "densevid_rss_$2s.mp4" --path "$1" --pid "$(cat "$WORK/comfy.pid")"
    stop
  done
fi
grep -a "densevid" "$WORK/comfy.log" | tail -8
