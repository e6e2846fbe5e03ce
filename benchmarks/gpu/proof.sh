#!/usr/bin/env bash
# The proof's entry point on the lent GPU machine (through the device tool's `run`), from a copy of this repository.
#
#   python benchmarks/proof.py prepare                     # here, first: stages .gpu/part1 and .gpu/part2
#   run(command="bash benchmarks/gpu/proof.sh 1", carry=[".gpu/part1"], timeout_s=300)
#   run(command="bash benchmarks/gpu/proof.sh 2", carry=[".gpu/part2"], timeout_s=240)   # at once: warm for 30 s
#
# What each call does is in benchmarks/proof.py; results come back from $OUT (at most 8 files per call).
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2> /dev/null || echo "no nvidia-smi"
exec "${PY:-python3}" benchmarks/proof.py "$@"
