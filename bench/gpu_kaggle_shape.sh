#!/usr/bin/env bash
# The Kaggle shape on a GPU machine without network, after bench/gpu_unsloth_vllm.sh's packs were copied
# to $STAGE/vc (see docs/benchmarks.md). Steps, each one device call:
#   epochs   install, build the 8B shape, then at once: bench_epochs on GPU 0 (unsloth, 22 GiB cap,
#            k = 1 vs 4) and a dry run of the tiny model with one worker per GPU
#   run8b [N]  a dry run of N tasks (8) on the 8B shape with the unsloth backend, one worker per GPU, 22 GiB cap each
#   kratio [P]  bench_epochs k = 1 vs 4 at P (256) predictions per task, one process per GPU (4 GPUs)
#   prefill  bench_epochs at unsloth.max_num_batched_tokens 4096 and 2048 (KV cache against prefill reserve)
#   overlap  bench/gpu_overlap.py: one call vs k calls vs continuous refill, and training on a second thread
#   stream P S [MODES]  bench_epochs k = 1 vs 4 at P predictions per task, S samples per learn step, per engine mode
#            (stream: training between steps; stream+train: the default)
#   notebook commit|rerun [ARGS]  kaggle_notebook.ipynb through nbclient against a /kaggle-like tree under
#            $STAGE/nb-MODE (bench/gpu_notebook.py; needs .whl/nb and the nbclient set in .whl/extra), on every
#            GPU, ending by the call's ~9.5 min (NB_CALL_S); ARGS: --fp8, --tasks N, --set K=V
#   fp8ckpt [ARGS]  bench/gpu_fp8_checkpoint.py on GPU 0: the 8B shape quantized by `arc25 quantize-fp8`, loaded as
#            an L4 would (load_in_fp8=False, vLLM's and unsloth's Triton block-FP8 kernels), then the measurement
#            of `fp8` below (run `fp8 bf16` first in the same machine session for the parity reference)
#   fp8 bf16|fp8|"bf16 fp8" [ARGS]  bench/gpu_unsloth_vllm.py on GPU 0, 22 GiB cap, K = 4: the longest ARC-AGI-2
#            prompt's training steps, the workload (4 tasks x 64 predictions, 512-1024 new tokens, cut at
#            WINDOW s, 150) and the parity against the bf16 run (run bf16 first; each process ~5 min)
# Usage: bash bench/gpu_kaggle_shape.sh MODE [ARGS]   (EVAL: a folder with the ARC-AGI-1 evaluation files)
set -uo pipefail
START=$(date +%s)
STAGE="${ARC25_STAGE:-${TMPDIR:-/tmp}}"
OUT="${OUT:-$STAGE/out}"
EVAL="${EVAL:-.whl/eval2024}"
GPUS=$(nvidia-smi --query-gpu=index --format=csv,noheader | paste -sd,)
MODEL="$STAGE/llama8b"
mkdir -p "$OUT"
if [ ! -f "$STAGE/site/.installed" ]; then  # the installer of the unsloth + vLLM set (it then runs its probe: skip it)
  sed -e '/^nvidia-smi/,$d' bench/gpu_unsloth_vllm.sh > "$STAGE/install.sh" && bash "$STAGE/install.sh" || exit 1
fi
export PYTHONPATH=$STAGE/site:$PWD/arc25_src
export VLLM_USE_FLASHINFER_SAMPLER=0 HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 UNSLOTH_VLLM_MERGED_ROLLOUT=0
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpus.txt"
python3 -c "import sys; sys.path.insert(0, 'bench'); from pathlib import Path; from gpu_unsloth_vllm import make_8b; make_8b(Path('$MODEL'))" || exit 1
quiet() { grep -v -E "it/s\]|s/it\]|non-default args|Initializing a V1|^\s*$"; }
# bench_epochs on the 8B shape under an L4's memory, the 4 median evaluation tasks, K = 4, 512 new tokens, n = 8:
# bench8b GPU SECONDS [bench_epochs args] (SECONDS 0: no limit)
bench8b() {
  local gpu=$1 limit=$2; shift 2
  CUDA_VISIBLE_DEVICES=$gpu timeout "$limit" python3 bench/bench_epochs.py --backend unsloth --model "$MODEL" \
    --challenges "$EVAL/arc-agi_evaluation_challenges.json" --median-tasks 4 --in-flight 4 --n-per-prompt 8 \
    --max-tokens 512 --set unsloth.memory_cap_gib=22 "$@"
}
case "${1:-}" in
epochs)
  bench8b 0 0 --epochs 1 4 --predictions 32 --samples 2 --json "$OUT/bench_epochs.json" \
    > "$OUT/bench_epochs.log" 2>&1 &
  bench=$!
  python3 -m arc25 dry-run --random-model --gpus "$GPUS" --challenges "$EVAL/arc-agi_evaluation_challenges.json" \
    --tasks 16 --time-limit 3m --set run.reserve_s=30 --out "$STAGE/dry-tiny" --no-progress > "$OUT/dry_tiny.log" 2>&1
  echo "tiny dry run: exit $?"; tail -25 "$OUT/dry_tiny.log"
  tar czf "$OUT/dry_tiny.tgz" -C "$STAGE" dry-tiny/report dry-tiny/workers dry-tiny/submission.json 2>/dev/null
  wait $bench; echo "bench_epochs: exit $?"; quiet < "$OUT/bench_epochs.log" | tail -12
  ;;
prefill)  # vLLM's prefill chunk (its activation reserve) against KV cache: the same bench at 4096 and 2048
  for b in 4096 2048; do
    bench8b 0 0 --epochs 1 4 --predictions 32 --samples 2 --set unsloth.max_num_batched_tokens=$b \
      --json "$OUT/prefill$b.json" > "$OUT/prefill$b.log" 2>&1
    echo "max_num_batched_tokens=$b: exit $?"; grep -E "^\||^GPU|KV cache size" "$OUT/prefill$b.log" | tail -5
  done
  ;;
stream)
  P=${2:-32}; S=${3:-2}; MODES=${4:-stream stream+train}
  bench8b 0 0 --epochs 1 4 --predictions $P --samples $S --modes $MODES --json "$OUT/stream$P.json" \
    > "$OUT/stream$P.log" 2>&1
  echo "stream $P: exit $?"; quiet < "$OUT/stream$P.log" | grep -E "^\||^GPU|^tasks|running|Error|error" | tail -30
  ;;
kratio)  # k = 1 vs 4 at the Kaggle epoch size (search.predictions_per_epoch = 64 at k = 4; the default samples per
  # learn step, 16), one process per GPU, each cut at the call's limit (its JSON keeps the rows done):
  # GPU 0 k = 1; GPU 1 k = 1 under untrained adapters (what the LoRA kernels cost); GPU 2 k = 4;
  # GPU 3 k = 4 with nothing to learn (an untrained adapter is not served: the epochs' own cost)
  P=${2:-256}; END=$(( START + ${3:-560} )); mkdir -p "$STAGE/kr"
  kr() {
    local gpu=$1 name=$2; shift 2
    bench8b $gpu $(( END - $(date +%s) )) --predictions $P --modes stream+train --json "$STAGE/kr/$name.json" "$@" \
      > "$STAGE/kr/$name.log" 2>&1
    echo "$name: exit $?"; quiet < "$STAGE/kr/$name.log" | grep -E "^\||^GPU|^tasks|K=|Error|error" | tail -8
  }
  kr 0 k1 --epochs 1 --samples 16 > "$STAGE/kr/k1.out" &
  kr 1 k1lora --epochs 1 --samples 16 --lora-at-k1 > "$STAGE/kr/k1lora.out" &
  kr 2 k4 --epochs 4 --samples 16 > "$STAGE/kr/k4.out" &
  kr 3 k4nolearn --epochs 4 --samples 0 > "$STAGE/kr/k4nolearn.out" &
  wait; cat "$STAGE"/kr/*.out; tar czf "$OUT/kratio.tgz" -C "$STAGE" kr
  ;;
overlap)
  CUDA_VISIBLE_DEVICES=0 python3 bench/gpu_overlap.py --model "$MODEL" --challenges "$EVAL/arc-agi_evaluation_challenges.json" \
    --set unsloth.memory_cap_gib=22 --json "$OUT/overlap.json" > "$OUT/overlap.log" 2>&1
  echo "overlap: exit $?"; quiet < "$OUT/overlap.log" | grep -E "^\||^GPU|^tasks|^\{|Error|error" | tail -30
  ;;
run8b)
  python3 -m arc25 dry-run --model "$MODEL" --gpus "$GPUS" --challenges "$EVAL/arc-agi_evaluation_challenges.json" \
    --tasks ${2:-8} --time-limit 6m --set model.backend=unsloth --set unsloth.memory_cap_gib=22 \
    --set run.reserve_s=60 --set sampling.max_tokens=512 --set search.predictions_per_epoch=16 \
    --set search.max_predictions=64 --out "$STAGE/dry-8b" --no-progress > "$OUT/dry_8b.log" 2>&1
  echo "8B dry run: exit $?"; quiet < "$OUT/dry_8b.log" | grep -v -E "^(INFO|WARNING|\[rank)|Unsloth" | tail -40
  grep -h -E "peak|GiB" "$STAGE"/dry-8b/workers/*.log 2>/dev/null | tail -8
  tar czf "$OUT/dry_8b.tgz" -C "$STAGE" dry-8b/report dry-8b/workers dry-8b/submission.json 2>/dev/null
  ;;
notebook)
  NB=${2:-commit}
  python3 bench/gpu_notebook.py "$NB" --model "$MODEL" --eval .whl/nb --stage "$STAGE" --out "$OUT" \
    --end-by $(( START + ${NB_CALL_S:-570} )) "${@:3}" > "$OUT/notebook-$NB.log" 2>&1
  echo "notebook $NB: exit $?"; quiet < "$OUT/notebook-$NB.log" | grep -v -E "^(INFO|WARNING|\[rank)|Unsloth" | tail -45
  ;;
fp8ckpt)
  mkdir -p "$OUT/fp8ckpt"
  CUDA_VISIBLE_DEVICES=0 python3 bench/gpu_fp8_checkpoint.py --bf16-dir "$MODEL" --fp8-dir "$STAGE/llama8b-fp8" --as-l4 \
    --out "$OUT/fp8ckpt" -- --cap-gib 22 --vllm-gib 17 --k 4 --fp8-kv --steps 2 --answer-tokens 1024 \
    --max-num-batched-tokens 2048 --challenges .whl/nb/arc-agi_evaluation_challenges.json --generate-calls 0 \
    --workload --workload-window-s ${WINDOW:-150} --parity "$STAGE/parity" "${@:2}" > "$OUT/fp8ckpt.log" 2>&1
  echo "fp8ckpt: exit $?"; grep -E "^\||QUANTIZED|LOADED|Selected|Error|error|KV cache|Model loading took" "$OUT/fp8ckpt.log" | tail -70
  ;;
fp8)  # with 2+ GPUs and both weights asked, the two processes run at once (fp8's parity waits for bf16's reference)
  W=(${2:-bf16}); N=$(echo "$GPUS" | tr , '\n' | wc -l); PAR=$([ ${#W[@]} -gt 1 ] && [ "$N" -gt 1 ] && echo 1)
  one() {  # one() GPU WEIGHTS [args]
    local gpu=$1 w=$2; shift 2; mkdir -p "$OUT/$w"
    CUDA_VISIBLE_DEVICES=$gpu python3 bench/gpu_unsloth_vllm.py --model-dir "$MODEL" --out "$OUT/$w" --cap-gib 22 \
      --vllm-gib 17 --k 4 --fp8-kv --steps 2 --answer-tokens 1024 --max-num-batched-tokens 2048 \
      --challenges .whl/nb/arc-agi_evaluation_challenges.json --generate-calls 0 --workload \
      --workload-window-s ${WINDOW:-150} --parity "$STAGE/parity" --parity-wait-s $([ -n "$PAR" ] && echo 300 || echo 0) \
      $([ "$w" = fp8 ] && echo --fp8) "$@" > "$OUT/fp8-$w.log" 2>&1
    echo "$w: exit $?"; grep -E "^\||Error|error|KV cache|Model loading took" "$OUT/fp8-$w.log" | tail -40
  }
  if [ -n "$PAR" ]; then
    one 0 "${W[0]}" "${@:3}" > "$OUT/fp8-${W[0]}.out" & one 1 "${W[1]}" "${@:3}" > "$OUT/fp8-${W[1]}.out"
    wait; cat "$OUT/fp8-${W[0]}.out" "$OUT/fp8-${W[1]}.out"
  else
    for w in "${W[@]}"; do one 0 "$w" "${@:3}"; done
  fi
  ;;
*) echo "usage: $0 epochs|prefill|overlap|stream P S [MODES]|kratio [P]|run8b [N]|notebook commit|rerun|fp8 WEIGHTS"; exit 2;;
esac
