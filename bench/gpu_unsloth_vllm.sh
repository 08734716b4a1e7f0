#!/usr/bin/env bash
# Install the offline unsloth + vLLM set into $STAGE/site and run bench/gpu_unsloth_vllm.py.
#
# The set (built by bench/gpu_wheels_pack.sh, carried to the GPU machine one part per device call,
# each copied to $STAGE/vc/ while the machine stays warm): the installed content of
#   vllm-slim.tar.zst.part-{0,1}: vLLM 0.26.0 without the FA2 kernels (Hopper runs FA3; an L4 needs FA2:
#       the Kaggle wheelhouse keeps them), the vllm-rs binary and DeepGEMM/SM100 headers;
#   deps.tar.zst: vLLM's 19 small wheels, unsloth 2026.10.9 (without its studio UI), unsloth_zoo 2026.10.9, trl 1.15.0, datasets 4.8.5,
#       fsspec 2026.2.0, bitsandbytes 0.50.2 (CUDA 13.0 library only), torchao 0.18.0, diffusers 0.42.1,
#       cut_cross_entropy 25.1.1, tyro and small deps; importlib_metadata as a wheel in $STAGE/vc/extra.
# Usage: bash bench/gpu_unsloth_vllm.sh [probe args...]
set -uo pipefail
STAGE="${ARC25_STAGE:-${TMPDIR:-/tmp}}"  # on the device machine: where parts are copied and installed
VC="$STAGE/vc"; SITE="$STAGE/site"
OUT="${OUT:-$STAGE/out}"
mkdir -p "$OUT" $SITE
zstd() {  # the image has no zstd: carry .whl/bin/zstd (this machine's, with its libraries)
  if type -P zstd >/dev/null; then command zstd "$@"; else LD_LIBRARY_PATH="$PWD/.whl/bin" "$PWD/.whl/bin/zstd" "$@"; fi
}
if [ ! -f $SITE/.installed ]; then
  t0=$(date +%s)
  if ls $VC/site-all.tar.zst.part-* >/dev/null 2>&1; then
    cat $VC/site-all.tar.zst.part-* | zstd -d -q --long=27 | tar xf - -C $SITE || exit 1
  else  # the three-part layout: vllm-slim.tar.zst.part-{0,1} + deps.tar.zst
    cat $VC/vllm-slim.tar.zst.part-* > $VC/vllm-slim.tar.zst
    (cd $VC && sha256sum vllm-slim.tar.zst deps.tar.zst)
    zstd -d -q --long=27 -c $VC/vllm-slim.tar.zst | tar xf - -C $SITE || exit 1
    zstd -d -q -c $VC/deps.tar.zst | tar xf - -C $SITE || exit 1
  fi
  for w in $VC/extra/*.whl; do [ -f "$w" ] && (cd $SITE && python3 -m zipfile -e "$w" .); done
  touch $SITE/.installed
  echo "installed in $(( $(date +%s) - t0 )) s"
fi
export PYTHONPATH=$SITE:$PWD/arc25_src
export VLLM_USE_FLASHINFER_SAMPLER=0 HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 UNSLOTH_VLLM_MERGED_ROLLOUT=0
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import time; t=time.time(); import unsloth, vllm, torch; print('import ok', unsloth.__version__, vllm.__version__, torch.__version__, round(time.time()-t), 's')" 2>&1 | tail -25
python3 bench/gpu_unsloth_vllm.py --out "$OUT" "$@" 2>&1 | tee "$OUT/log.txt" | grep -v -E "^\s*$|it/s\]|s/it\]" | tail -150
