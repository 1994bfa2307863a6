#!/usr/bin/env bash
# Runs the benchmark stages on a remote GPU host you can ssh / run commands on: copy this
# repository there, install it (pip install -e ".[test]"), then from the repository root
#
#   bash scripts/remote_gpu_session.sh STAGE [STAGE ...]      (results under $OUT)
#
# Stages: info | bench_inference | bench_train | bench_degrade | walk | train | weights | eval |
#         variants | profile.
#   bench_inference   python -m facedeblur_jax.bench.throughput --mode inference, JAX and PyTorch
#   bench_train       the same for one training step of each phase (L_VGG off)
#   bench_degrade     degradation alone (facedeblur_jax.bench.degrade): unroll, blur method
#   walk              degradation alone: the scan, the Pallas walk, a 20,000-kernel pool
#   variants          the VARIANTS below: each a JAX-only throughput run, rows tagged by name
#                     (each compiles the joint step again: give a subset in VARIANTS)
#   profile           facedeblur_jax.bench.profile_step: inference b256 and b1, the joint
#                     step b64 (per-kernel GPU time; PROF_RUNS="mode:batch ...", PROF_ARGS)
#   train             facedeblur train --config ${TRAIN_CONFIG:-gpu_short} on FACES=DIR (an
#                     aligned face folder with labels.csv, train/, test/ and parsing labels
#                     in labels/) for at most T_RUN seconds; run the stage again (RUN kept)
#                     and it resumes from the last checkpoint: a long run (TRAIN_CONFIG=paper)
#                     in chunks
#   weights           the run's generator as one weights file (facedeblur export-weights),
#                     split into SHARD_MB-MiB pieces (cat them back together in order)
#   eval              facedeblur eval of that run on FACES's test split with KERNELS=FILE
#                     (a bank from facedeblur make-kernels; made in $OUT when unset)
# Each stage runs under its own `timeout` (T_* variables), and benchmarks append every row
# to $OUT/rows.jsonl as soon as it is measured, so a stage cut short keeps what it measured.
set -uo pipefail
OUT=${OUT:-gpu_out}
RUN=${RUN:-$OUT/run}  # the train stage's workdir, evaluated by the eval stage
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false
python3 -c "import facedeblur_jax" || { echo "install this repository first: pip install -e '.[test]'"; exit 1; }
# XLA's per-fusion autotune cache, shared by every process of this script: the variants
# compile the same convolutions again and again. Only set when this XLA knows the flag (an
# unknown XLA flag aborts the process). Results are the same either way.
if [ -n "${AUTOTUNE_CACHE:-1}" ] && XLA_FLAGS="--xla_gpu_per_fusion_autotune_cache_dir=$OUT/xla_autotune" \
  python3 -c "import jax, jax.numpy as jnp; jnp.ones(2).block_until_ready()" 2>/dev/null; then
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_per_fusion_autotune_cache_dir=$OUT/xla_autotune"
  echo "autotune cache: $OUT/xla_autotune"
fi
BENCH=(python3 -m facedeblur_jax.bench.throughput --config paper --rows-jsonl "$OUT/rows.jsonl")
need_faces() { [ -n "${FACES:-}" ] || { echo "stage $1 needs FACES=DIR (an aligned face folder)"; exit 2; }; }

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
      timeout "${T_DEG:-150}" python3 -m facedeblur_jax.bench.degrade --config paper \
        --batch-sizes "${DEG_BATCHES:-16,64}" --unroll "${DEG_UNROLL:-1,16,64}" \
        --blur-methods "${DEG_BLUR:-grouped,fft}" --json "$OUT/degrade.json" ;;
    walk)
      timeout "${T_DEG:-200}" python3 -m facedeblur_jax.bench.degrade --config paper \
        --batch-sizes "${DEG_BATCHES:-16,64,256}" --unroll 1 --impls scan,auto \
        --pool-sizes 0,20000 \
        --blur-methods "${DEG_BLUR:-grouped,fft}" --json "$OUT/walk.json" ;;
    profile)
      # PROF_RUNS: "mode:batch" entries; the trace of each (gzip'd Perfetto JSON) is copied
      # to $OUT when it is under 12 MB.
      for run in ${PROF_RUNS:-inference:256 inference:1 train:64}; do
        mode=${run%%:*} batch=${run##*:}
        iters=10; [ "$mode" = train ] && iters=3
        rm -rf "$OUT/prof_${mode}_$batch"
        # shellcheck disable=SC2086
        timeout "${T_PROF:-200}" python3 -m facedeblur_jax.bench.profile_step --config paper --mode "$mode" \
          --phase "${PROF_PHASE:-joint}" --batch "$batch" --dtype bf16 --iters $iters \
          --config.loss.vgg_weight=0 ${PROF_ARGS:-} --trace-dir "$OUT/prof_${mode}_$batch" \
          --json "$OUT/profile_${mode}_b$batch.json"
        find "$OUT/prof_${mode}_$batch" -name '*.json.gz' -size -12M \
          -exec cp {} "$OUT/trace_${mode}_b$batch.json.gz" \;
      done ;;
    train)
      need_faces train
      timeout "${T_RUN:-1200}" facedeblur train --config "${TRAIN_CONFIG:-gpu_short}" --workdir "$RUN" \
        --config.data.root="$FACES" ${RUN_ARGS:-} 2>&1 | tr '\r' '\n' \
        | grep -v '^\s*$' | awk 'NR % 5 == 0 || /phase|Error|error|saved|done/' ;;
    weights)
      facedeblur export-weights --checkpoint "$RUN" --out "$OUT/weights.npz" --overwrite \
        --name "${WEIGHTS_NAME:-$(basename "$RUN")}" || exit 1
      split -b "${SHARD_MB:-40}M" -d "$OUT/weights.npz" "$OUT/weights.npz.part" && rm "$OUT/weights.npz"
      sha256sum "$OUT"/weights.npz.part* ;;
    eval)
      need_faces eval
      if [ -z "${KERNELS:-}" ]; then
        KERNELS=$OUT/kernels_paper.npz
        [ -f "$KERNELS" ] || facedeblur make-kernels --config paper --out "$KERNELS" || exit 1
      fi
      timeout "${T_EVAL:-600}" facedeblur eval --checkpoint "$RUN" --data "$FACES" \
        --kernels "$KERNELS" --out "$OUT/eval" --batch-size 256 --no-progress ;;
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
      DEFAULT_VARIANTS+=";cache_cold|$J --config.train.compilation_cache_dir=$OUT/xla_cache"
      DEFAULT_VARIANTS+=";cache_warm|$J --config.train.compilation_cache_dir=$OUT/xla_cache"
      DEFAULT_VARIANTS+=";inf_base|$I;inf_subpixel|$I --config.model.upsample=subpixel"
      DEFAULT_VARIANTS+=";inf_cmdbuf|$I|--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUDNN"
      list=${VARIANTS:-$DEFAULT_VARIANTS}
      [[ $list == *"cache_cold|"* ]] && rm -rf "$OUT/xla_cache"
      IFS=';' read -ra vs <<<"$list"
      for v in "${vs[@]}"; do
        IFS='|' read -r name args flags <<<"$v"
        echo "--- variant $name: $args ${flags:+(XLA_FLAGS $flags)}"
        # shellcheck disable=SC2086
        XLA_FLAGS="${XLA_FLAGS:-} ${flags:-}" timeout "${T_VAR:-120}" \
          python3 -m facedeblur_jax.bench.throughput --config paper \
          --rows-jsonl "$OUT/variant_$name.jsonl" --framework jax --repeats 3 \
          --min-time 0.5 $args | tail -n 8
      done ;;
    *) echo "unknown stage $stage"; exit 2 ;;
  esac
done
echo "=== end $(date +%T)"
