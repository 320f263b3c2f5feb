#!/usr/bin/env bash
# One GPU session's measurements in one call, under 10 minutes on an H200 (docs/BENCHMARKS.md):
#
#   1. benchmarks/gpu_grpo.py: s/step, rollout tokens/s, generation vs backward, peak memory of the
#      release-multidomain GRPO step for each rollout path TRL offers (random Qwen2.5-VL-7B);
#   2. benchmarks/gpu_adfm.py TASK=multitask: questions/s with and without the fast engine's shared
#      prefixes at batches 64, 128 and 256, with its on-device correctness check (CHECK) and the plain
#      transformers anchor (shared/bench/hf_generate_anchor.py) in the same call.
#
# Each part runs under `timeout` (GRPO_S, ADFM_S seconds) and writes its JSON after every
# measurement, so a part cut short keeps what it measured. Figures go to $OUT: gpu_grpo.json,
# gpu_adfm.json (+ the logs, nvidia-smi's card line).
#
# The lent machines cannot build the Qwen2.5 tokenizer (no dashscope package) and do not get
# ../shared, so prepare both here first (runs/ is git-ignored) and carry runs/gpu with the call:
#
#   benchmarks/gpu_session.sh prepare            # here: runs/gpu/qwen25-tok, runs/gpu/hf_generate_anchor.py
#   OUT=$OUT benchmarks/gpu_session.sh           # there, one call, carry ["runs/gpu"], timeout 600
#   SIZE=tiny OUT=/tmp/s benchmarks/gpu_session.sh   # CPU dry run of the same script (tested)
set -u
cd "$(dirname "$0")/.."
GPU_DIR=runs/gpu
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [ "${1:-}" = prepare ]; then
    mkdir -p "$GPU_DIR"
    anchor=""
    for dir in . .. ../.. ../../..; do  # ./shared, ../shared (worktrees), ...
        if [ -f "$dir/shared/bench/hf_generate_anchor.py" ]; then anchor="$dir/shared/bench/hf_generate_anchor.py"; break; fi
    done
    [ -n "$anchor" ] || { echo "gpu_session.sh: shared/bench/hf_generate_anchor.py not found" >&2; exit 2; }
    cp "$anchor" "$GPU_DIR/"
    python3 -c "from adbench.models.tiny_qwen import build_qwen_tokenizer as b; b().save_pretrained('$GPU_DIR/qwen25-tok')" \
        || exit 2
    echo "prepared $GPU_DIR: $(ls "$GPU_DIR" | tr '\n' ' ')"
    exit 0
fi

OUT=${OUT:-runs/gpu-session}
mkdir -p "$OUT"
if [ -z "${TOKENIZER_DIR:-}" ] && [ -f "$GPU_DIR/qwen25-tok/tokenizer.json" ]; then export TOKENIZER_DIR=$GPU_DIR/qwen25-tok; fi
if [ -z "${ANCHOR:-}" ] && [ -f "$GPU_DIR/hf_generate_anchor.py" ]; then export ANCHOR=$GPU_DIR/hf_generate_anchor.py; fi
export OUT
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi") \
    > "$OUT/card.txt" 2>&1
echo "card: $(cat "$OUT/card.txt")"

start=$(date +%s)
timeout "${GRPO_S:-280}" python3 benchmarks/gpu_grpo.py > "$OUT/gpu_grpo.log" 2>&1
echo "gpu_grpo.py: exit $? after $(( $(date +%s) - start )) s"
grep '^GRPO ' "$OUT/gpu_grpo.log" | cut -c1-600

start=$(date +%s)
# the decoding step runs eagerly (+eager): compiling it for three batch sizes would take about two of
# the session's minutes, and 16 new tokens per question leave the prefill the larger part either way
TASK=multitask MODES=${MODES:-fast+prefetch+eager,fast+prefetch+eager+noshare} ROUNDS=${ROUNDS:-2} \
    timeout "${ADFM_S:-260}" python3 benchmarks/gpu_adfm.py > "$OUT/gpu_adfm_multitask.log" 2>&1
echo "gpu_adfm.py TASK=multitask: exit $? after $(( $(date +%s) - start )) s"
grep -E '^(CHECK|ANCHOR|ADFM) ' "$OUT/gpu_adfm_multitask.log" | cut -c1-600
ls "$OUT"
