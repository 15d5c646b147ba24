#!/usr/bin/env bash
# Run HERE (a machine with PyPI and ../shared/data) before bench/gpu_check.sh runs on a GPU machine that has no
# internet and no ../shared. Fills three folders of this checkout that git ignores (.git/info/exclude):
#   .whl/        wheels of what the GPU image lacks (its Python 3.12 has torch, transformers, accelerate, peft,
#                pyarrow, httpx...; not trl, datasets, gguf, pydantic, openai, math-verify and their needs)
#   .gpu-data/   the files the check reads from ../shared/data, SmolLM2's folder without its GGUF
#   .gpu-gguf/   the SmolLM2 GGUF (98 MB) in two halves: a device call carries at most 64 MiB, so the first call
#                carries .gpu-gguf/a and stashes it in /tmp, the second carries .gpu-gguf/b and runs the check.
# Then (the device tool; each call's tree stays under 64 MiB; the second within 30 s, while the machine is warm):
#   run  carry=[".gpu-gguf/a", ".gpu-data"]   command: mkdir -p /tmp/gguf && cp .gpu-gguf/a /tmp/gguf/ && cp -r .gpu-data /tmp/
#   run  carry=[".whl", ".gpu-gguf/b"]        command: bash bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared/data}
for d in .whl .gpu-data .gpu-gguf; do grep -qx "/$d/" .git/info/exclude 2>/dev/null || echo "/$d/" >>.git/info/exclude; done

# Wheels for CPython 3.12 on manylinux x86-64, versions from constraints.txt, one of each, no dependencies pulled in.
rm -rf .whl && mkdir -p .whl
PKGS="trl datasets dill multiprocess gguf pydantic pydantic_core annotated-types typing-inspection openai jiter
      sniffio distro httpx2 httpcore2 h11 math-verify latex2sympy2_extended antlr4-python3-runtime"
for p in $PKGS; do
  pin=$(grep -i -E "^${p//-/[-_]}==" constraints.txt || true)
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d .whl "${pin:-$p}" 2>&1 | grep -v "is ignored: it is neither" || true
done

# Data: what the tests, the quickstart and the benches read (the quickstart itself needs no data files).
rm -rf .gpu-data && mkdir -p .gpu-data/models .gpu-data/teacher_rationales/rereading_re2
mkdir -p .gpu-data/gsm8k && cp "$SHARED/gsm8k/test.jsonl" .gpu-data/gsm8k/
mkdir -p .gpu-data/finetune_cot/dataset
cp -r "$SHARED/finetune_cot/split" .gpu-data/finetune_cot/
cp "$SHARED/finetune_cot/dataset/svamp.json" "$SHARED/finetune_cot/dataset/commonsense_qa.json" .gpu-data/finetune_cot/dataset/
for f in svamp__gpt-4o-mini-2024-07-18.jsonl gsm8k_test__gpt-3.5-turbo.jsonl commonsenseqa_dev__gpt-3.5-turbo.jsonl; do
  cp "$SHARED/teacher_rationales/rereading_re2/$f" .gpu-data/teacher_rationales/rereading_re2/
done
mkdir -p .gpu-data/teacher_rationales/distilling_step_by_step  # PaLM's released SVAMP rationales (instruct tests)
cp -r "$SHARED/teacher_rationales/distilling_step_by_step/svamp" .gpu-data/teacher_rationales/distilling_step_by_step/
mkdir -p .gpu-data/models/smollm2-135m-instruct-q4_1
find "$SHARED/models/smollm2-135m-instruct-q4_1" -maxdepth 1 -type f ! -name '*.gguf' -exec cp {} .gpu-data/models/smollm2-135m-instruct-q4_1/ \;
rm -rf .gpu-gguf && mkdir -p .gpu-gguf
split -n 2 -d "$SHARED/models/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf" .gpu-gguf/part
mv .gpu-gguf/part00 .gpu-gguf/a && mv .gpu-gguf/part01 .gpu-gguf/b
chmod -R u+w .gpu-data  # ../shared is read-only; the copies must be replaceable next time
du -sh .whl .gpu-data .gpu-gguf/a .gpu-gguf/b
