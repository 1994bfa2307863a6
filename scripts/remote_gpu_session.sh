#!/usr/bin/env bash
# The stages of one lease on a single-GPU machine, run from the repository root:
#
#   bash tools/gpu_session.sh STAGE [STAGE ...]     (results under $OUT, default /tmp/gpu_out)
#
# Stages: info | bench_inference | bench_train | bench_degrade | walk | train | eval |
#         variants | profile.
# The #7 speed-up stages (run 2026-11-24, docs/benchmarks/h100_2026-11-24_speedups.md;
# the whole lease is 30 min, 10 min per call):
#   walk              degradation alone: the scan, the Pallas walk, a 20,000-kernel pool
#   variants          the default VARIANTS below: each a JAX-only bench run, rows tagged
#                     (each compiles the joint step, ~100 s on an H100: run them in 3–4
#                     calls, e.g. VARIANTS="$(...)" with a subset, T_VAR per variant)
#   profile           tools/profile_step.py: inference b256 and b1, the joint step b64
#                     (per-kernel GPU time; PROF_RUNS="mode:batch ...", PROF_ARGS)
# The machine has JAX, PyTorch and most dependencies but no package index, so the wheels
# this project needs beyond its image travel in .whl/ (see /work/.library/device/README.md
# in this workplace), and the data for `train`/`eval` in .gpudata/ (a copy of the shared
# face set with pseudo labels, and the test-kernel bank of tools/make_test_kernels.py).
# Each stage runs under its own `timeout`, and benchmarks append every row to
# $OUT/rows.jsonl as soon as it is measured, so a stage cut short keeps what it measured.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false

# The wheels once per machine; this checkout every time (a warm machine keeps /tmp/site,
# and a stale copy of the package there once ran an old config).
if [ ! -d /tmp/site/grain ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
fi
rm -rf /tmp/site/facedeblur_jax /tmp/site/facedeblur_jax-*
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile \
  --target /tmp/site . >/dev/null || exit 1
export PYTHONPATH=/tmp/site
export PATH=/tmp/site/bin:$PATH
# XLA's per-fusion autotune cache, shared by every process of this call: the variants compile
# the same convolutions again and again (~100 s per joint step). Only set when this XLA
# knows the flag (an unknown XLA flag aborts the process). Results are the same either way.
if [ -n "${AUTOTUNE_CACHE:-1}" ] && XLA_FLAGS="--xla_gpu_per_fusion_autotune_cache_dir=/tmp/xla_autotune" \
  python3 -c "import jax, jax.numpy as jnp; jnp.ones(2).block_until_ready()" 2>/dev/null; then
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_per_fusion_autotune_cache_dir=/tmp/xla_autotune"
  echo "autotune cache: /tmp/xla_autotune"
fi
FD=(python3 -P -c "import sys; from facedeblur_jax.cli import main; sys.exit(main())")
BENCH=(python3 tools/bench_throughput.py --config paper --rows-jsonl "$OUT/rows.jsonl")

for stage in "$@"; do
  echo "=== $stage $(date +%T)"
  case $stage in
    info)
      nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
      python3 -c "import jax, jaxlib, flax, optax, orbax.checkpoint as o, torch, grain; \
print('python', __import__('sys').version.split()[0], 'jax', jax.__version__, 'flax', \
flax.__version__, 'optax', optax.__version__, 'torch', torch.__version__, \
'cuda', torch.version.cuda, jax.devices())"
      ;;
    bench_inference)
      timeout "${T_INF:-300}" "${BENCH[@]}" --mode inference --framework "${INF_FRAMEWORK:-both}" \
        --batch-sizes "${INF_BATCHES:-1,16,64,256}" --dtypes "${INF_DTYPES:-bf16,fp32}" \
        ${INF_COMPILE:+--torch-compile} --repeats 3 --min-time 0.5 \
        --out "$OUT/inference${TAG:-}.json" --markdown "$OUT/inference${TAG:-}.md" ;;
    bench_train)
      timeout "${T_TRAIN:-300}" "${BENCH[@]}" --mode train --framework "${TRAIN_FRAMEWORK:-both}" \
        --phases "${TRAIN_PHASES:-coarse,parsing,fine,joint}" \
        --batch-sizes "${TRAIN_BATCHES:-16,64}" --dtypes "${TRAIN_DTYPES:-bf16}" \
        ${TRAIN_COMPILE:+--torch-compile} --repeats 3 --min-time 0.5 \
        --config.loss.vgg_weight=0 ${TRAIN_ARGS:-} \
        --out "$OUT/train${TAG:-}.json" --markdown "$OUT/train${TAG:-}.md" ;;
    bench_degrade)
      timeout "${T_DEG:-150}" python3 tools/bench_degrade.py --config paper \
        --batch-sizes "${DEG_BATCHES:-16,64}" --unroll "${DEG_UNROLL:-1,16,64}" \
        --blur-methods "${DEG_BLUR:-grouped,fft}" --json "$OUT/degrade.json" ;;
    walk)
      timeout "${T_DEG:-200}" python3 tools/bench_degrade.py --config paper \
        --batch-sizes "${DEG_BATCHES:-16,64,256}" --unroll 1 --impls scan,auto \
        --pool-sizes 0,20000 \
        --blur-methods "${DEG_BLUR:-grouped,fft}" --json "$OUT/walk.json" ;;
    profile)
      # PROF_RUNS: "mode:batch" entries; the trace of each (gzip'd Perfetto JSON) comes back
      # when it is small enough (the device tool returns files up to 16 MB).
      for run in ${PROF_RUNS:-inference:256 inference:1 train:64}; do
        mode=${run%%:*} batch=${run##*:}
        iters=10; [ "$mode" = train ] && iters=3
        rm -rf "/tmp/prof_${mode}_$batch"
        # shellcheck disable=SC2086
        timeout "${T_PROF:-200}" python3 tools/profile_step.py --config paper --mode "$mode" \
          --phase "${PROF_PHASE:-joint}" --batch "$batch" --dtype bf16 --iters $iters \
          --config.loss.vgg_weight=0 ${PROF_ARGS:-} --trace-dir "/tmp/prof_${mode}_$batch" \
          --json "$OUT/profile_${mode}_b$batch.json"
        find "/tmp/prof_${mode}_$batch" -name '*.json.gz' -size -12M \
          -exec cp {} "$OUT/trace_${mode}_b$batch.json.gz" \;
      done ;;
    train)
      timeout "${T_RUN:-330}" "${FD[@]}" train --config gpu_short --workdir /tmp/run \
        --config.data.root=.gpudata/faces ${RUN_ARGS:-} 2>&1 | tr '\r' '\n' \
        | grep -v '^\s*$' | awk 'NR % 5 == 0 || /phase|Error|error|saved|done/' ;
      cp /tmp/run/metrics.jsonl "$OUT/metrics.jsonl" 2>/dev/null ;;
    eval)
      timeout "${T_EVAL:-150}" "${FD[@]}" eval --checkpoint /tmp/run --data .gpudata/faces \
        --kernels .gpudata/kernels_paper.npz --out /tmp/eval --batch-size 256 --no-progress \
        && cp /tmp/eval/results.json /tmp/eval/results.md "$OUT/" \
        && cp /tmp/eval/*.png "$OUT/" 2>/dev/null ;;
    variants)
      # Each VARIANTS entry: "name|bench args[|extra XLA_FLAGS]" (rows saved per name). The
      # default measures the joint phase at batch 64, bf16, L_VGG off, with one change each
      # from the paper config (FFT blur, Triton walk, no pool, transposed conv, no remat).
      J="--mode train --phases joint --batch-sizes 64 --dtypes bf16 --config.loss.vgg_weight=0"
      I="--mode inference --batch-sizes 1,256 --dtypes bf16"
      DEFAULT_VARIANTS="base|$J;grouped_blur|$J --config.degrade.blur_method=grouped"
      DEFAULT_VARIANTS+=";walk_scan|$J --config.degrade.trajectory_impl=scan"
      DEFAULT_VARIANTS+=";pool20k|$J --config.degrade.kernel_pool_size=20000"
      DEFAULT_VARIANTS+=";subpixel|$J --config.model.upsample=subpixel"
      DEFAULT_VARIANTS+=";remat|$J --config.model.remat=True"
      DEFAULT_VARIANTS+=";cache_cold|$J --config.train.compilation_cache_dir=/tmp/xla_cache"
      DEFAULT_VARIANTS+=";cache_warm|$J --config.train.compilation_cache_dir=/tmp/xla_cache"
      DEFAULT_VARIANTS+=";inf_base|$I;inf_subpixel|$I --config.model.upsample=subpixel"
      DEFAULT_VARIANTS+=";inf_cmdbuf|$I|--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUDNN"
      list=${VARIANTS:-$DEFAULT_VARIANTS}
      [[ $list == *"cache_cold|"* ]] && rm -rf /tmp/xla_cache
      IFS=';' read -ra vs <<<"$list"
      for v in "${vs[@]}"; do
        IFS='|' read -r name args flags <<<"$v"
        echo "--- variant $name: $args ${flags:+(XLA_FLAGS $flags)}"
        # shellcheck disable=SC2086
        XLA_FLAGS="${XLA_FLAGS:-} ${flags:-}" timeout "${T_VAR:-120}" \
          python3 tools/bench_throughput.py --config paper \
          --rows-jsonl "$OUT/variant_$name.jsonl" --framework jax --repeats 3 \
          --min-time 0.5 $args | tail -n 8
      done ;;
    *) echo "unknown stage $stage"; exit 2 ;;
  esac
done
echo "=== end $(date +%T)"
