#!/usr/bin/env bash
# Stages, on this machine, what the GPU machine needs and does not have, under .gpu/ (git-ignored through
# .git/info/exclude, never committed; it only travels with device calls through `carry`):
#
#   .gpu/tokenizer   SmolLM2's tokenizer, exported from the GGUF (3.4 MB): bench_train needs no GGUF then
#   .gpu/data        the shared data files the benchmarks read (nli/snli-triplets.csv, nine sts/*.tsv; 4 MB)
#   .gpu/whl         wheels for `cft eval` and the GGUF loader: mteb, datasets, gguf and what they need that the
#                    GPU image lacks (11 MB). polars (54 MB) is replaced there by a stub, see device.sh
#   .gpu/gguf-a, .gpu/gguf-b   SmolLM2's GGUF in two parts (split_gguf.sh)
#
#   bash benchmarks/gpu/prepare.sh          # then follow BENCHMARKS.md, "Running the benchmarks on a GPU"
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
DATA=${CFT_SHARED_DATA:-../shared/data}
STAGE=.gpu
mkdir -p .git/info "$STAGE"
grep -qxF "/$STAGE/" .git/info/exclude 2>/dev/null || echo "/$STAGE/" >> .git/info/exclude

echo "== tokenizer"
rm -rf "$STAGE/tokenizer"
$PY -c "import sys; sys.path.insert(0, 'benchmarks'); import common; \
common.load_bench_tokenizer('embedded').save_pretrained('$STAGE/tokenizer')"

echo "== data"
rm -rf "$STAGE/data" && mkdir -p "$STAGE/data/nli" "$STAGE/data/sts"
cp "$DATA/nli/snli-triplets.csv" "$STAGE/data/nli/"
for f in sts12 sts13 sts14 sts15 sts16 stsb-test stsb-dev sick-r-all biosses; do cp "$DATA/sts/$f.tsv" "$STAGE/data/sts/"; done

echo "== wheels (python 3.12, manylinux x86_64; versions as in this project's venv)"
WHEELS=${WHEELS:-"mteb==2.26.24 datasets==5.2.0 gguf==0.19.0 pydantic==2.14.4 pydantic-core==2.50.5 \
annotated-types==0.8.0 typing-inspection==0.4.5 pytrec-eval-terrier==0.5.11 dill==0.4.1 multiprocess==0.70.19"}
mkdir -p "$STAGE/whl"
for spec in $WHEELS; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d "$STAGE/whl" "$spec"
done

echo "== GGUF"
PY=$PY bash benchmarks/gpu/split_gguf.sh split

bytes() { du -scb "$@" | tail -1 | cut -f1; }
tree=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- | tail -1 | cut -f1)
total() { echo "$(( ($(bytes "$@") + tree) * 10 / 1048576 ))" | sed 's/.$/.&/'; }
echo "== MiB each call sends (limit 64), the working tree's $(( tree / 1048576 )) MiB included"
echo "  train, max-batch (carry .gpu/gguf-a .gpu/tokenizer .gpu/data): $(total $STAGE/gguf-a $STAGE/tokenizer $STAGE/data)"
echo "  eval-quality     (carry .gpu/gguf-b .gpu/whl .gpu/data):       $(total $STAGE/gguf-b $STAGE/whl $STAGE/data)"
