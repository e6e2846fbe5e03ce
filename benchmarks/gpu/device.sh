#!/usr/bin/env bash
# Runs one benchmark step on the GPU machine (through the device tool's `run`), from a copy of this repository.
#
#   bash benchmarks/gpu/device.sh STEP [extra flags for the script]
#
#   check         versions, GPU, imports (seconds)
#   stash         keep SmolLM2's GGUF part a (carried in .gpu/gguf-a) in /tmp for the next call
#   train         bench_train.py: three sizes, every mode                  (carry .gpu/gguf-a .gpu/tokenizer .gpu/data)
#   max-batch     bench_train.py --find-max-batch, 2B-sized model          (carry .gpu/tokenizer .gpu/data)
#   eval-quality  join the GGUF; bench_eval.py; quality_run.py (recipe)   (carry .gpu/gguf-b .gpu/whl .gpu/data)
#   eval          join the GGUF; bench_eval.py only                         (same carry)
#   quality       quality_run.py with the recipe's hyperparameters         (GGUF and wheels already on the machine)
#   tune          quality_run.py --tune: lr x epochs chosen on stsb-dev     (GGUF and wheels already on the machine)
#
# Everything that must come back goes to $OUT (at most 8 files): <step>.json, <step>.md and <step>.log per script.
# The machine image has torch, transformers, peft, accelerate, sentence-transformers; it lacks mteb, datasets and
# gguf (installed from .gpu/whl into /tmp/cft-gpu/site, which lasts while the machine stays warm) and polars.
set -uo pipefail
cd "$(dirname "$0")/../.."
step=${1:-check}
shift || true
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export CFT_SHARED_DATA=$PWD/.gpu/data
WORK=/tmp/cft-gpu
SITE=$WORK/site
mkdir -p "$SITE"
export PYTHONPATH=$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}
export OUT=${OUT:-$PWD/benchmarks/results}
mkdir -p "$OUT"
PY=${PY:-python3}

install_wheels() {
  if ls .gpu/whl/*.whl > /dev/null 2>&1 && [ ! -f "$SITE/.wheels" ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .gpu/whl/*.whl \
      && touch "$SITE/.wheels" || { echo "device.sh: installing .gpu/whl failed"; exit 1; }
  fi
  # mteb imports polars at import time, but only its leaderboard and benchmark tables use it; its wheel is 54 MB.
  if ! $PY -c "import polars" 2> /dev/null; then
    mkdir -p "$SITE/polars"
    cat > "$SITE/polars/__init__.py" << 'EOF'
"""Stand-in for polars on the GPU machine: mteb imports it at import time; STS evaluation never calls it."""


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return type(name, (), {})
EOF
  fi
}

need_gguf() {
  bash benchmarks/gpu/split_gguf.sh join || exit $?
}

run_logged() {  # run_logged NAME command...: output to the console and to $OUT/NAME.log; keeps the exit status
  "${@:2}" 2>&1 | tee "$OUT/$1.log"
  return "${PIPESTATUS[0]}"
}

[ -d .gpu/gguf-a ] && bash benchmarks/gpu/split_gguf.sh stash
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2> /dev/null || echo "no nvidia-smi"

case "$step" in
  check)
    install_wheels
    $PY - << 'EOF'
import importlib
for name in ("torch", "transformers", "peft", "accelerate", "sentence_transformers", "mteb", "datasets", "gguf",
             "pyarrow", "huggingface_hub", "scipy"):
    try:
        module = importlib.import_module(name)
        print(f"{name} {getattr(module, '__version__', '?')}")
    except Exception as error:  # noqa: BLE001 - report every failure, keep going
        print(f"{name}: FAILED {type(error).__name__}: {error}")
import torch
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
import cft.modeling.encoder, cft.training.trainer  # noqa: E401,F401 - cft imports on this image
print("cft imports ok")
EOF
    ;;
  stash)
    ;;
  train)
    run_logged train $PY benchmarks/bench_train.py --tokenizer .gpu/tokenizer --output "$OUT" "$@"
    ;;
  max-batch)
    run_logged train-max-batch $PY benchmarks/bench_train.py --find-max-batch --tokenizer .gpu/tokenizer \
      --output "$OUT" "$@"
    ;;
  eval)
    install_wheels; need_gguf
    run_logged eval $PY benchmarks/bench_eval.py --output "$OUT" "$@"
    ;;
  eval-quality)
    install_wheels; need_gguf
    run_logged eval $PY benchmarks/bench_eval.py --models smollm2-135m,random:minicpm-2b \
      --sts-eval smollm2-135m,random:minicpm-2b --single-limit 1000 --output "$OUT"
    status=$?
    run_logged quality $PY benchmarks/quality_run.py --minilm none --output "$OUT" --runs-dir "$WORK/runs" \
      --eval-dir "$WORK/quality-eval" "$@" || exit $?
    exit $status
    ;;
  quality|tune)
    install_wheels; need_gguf
    flag=$([ "$step" = tune ] && echo --tune)
    run_logged "$step" $PY benchmarks/quality_run.py $flag --minilm none --output "$OUT" --runs-dir "$WORK/runs" \
      --eval-dir "$WORK/quality-eval" --name "$step" "$@"
    ;;
  *)
    echo "usage: $0 check|stash|train|max-batch|eval|eval-quality|quality|tune [flags]"; exit 2 ;;
esac
