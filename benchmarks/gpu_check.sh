#!/usr/bin/env bash
# One-command GPU check for funcgrad, for a session lent a GPU (no network needed).
#
#   benchmarks/gpu_check.sh [--cpu] [--quick] [--update-docs] [--no-tests] [--python PY]
#                           [--total-s N] [OUT_DIR]
#   benchmarks/gpu_check.sh --dry-list [--cpu] [OUT_DIR]    print the plan, run nothing
#
# Uses the machine's own Python and JAX (with its CUDA plugin): funcgrad is put on PYTHONPATH,
# nothing is installed and JAX is never touched. Steps, each logged under OUT_DIR:
#   1. env      the device (jax.devices(), nvidia-smi when present) and which optional
#               packages import (torch+CUDA, pytest-xdist, tqdm, matplotlib, hypothesis, flax,
#               mnist1d); what cannot run is skipped with the reason printed
#   2. models   pytest tests/test_models.py on the device (float64, as the suite runs)
#   3. rules    pytest tests/rules (the VJP table against jax.vjp) on the device, in several
#               pytest processes at once (benchmarks/gpu_tests.py; no pytest-xdist needed)
#   4. bench    python -m benchmarks.gpu_bench: funcgrad vs jax.grad under jit, torch eager and
#               torch.compile on CUDA; MLP, CNN, transformer in float32 and bfloat16
#   5. summary  OUT_DIR/summary.md and summary.json (steps, test counts, the benchmark tables;
#               the tables alone in gpu_tables.md and gpu_results.json)
# Every step has a time limit, so the whole check ends within --total-s (default 450 s, under
# the 8 minutes a GPU session allows); a step cut short is reported as such, its log kept.
# Options:
#   --cpu          dry run on the CPU: JAX_PLATFORMS=cpu and no CUDA for torch; same steps
#   --quick        tiny benchmark sizes (torch.compile is then skipped): a smoke test
#   --update-docs  on a GPU, write the tables into docs/performance.md's GPU section
#   --no-tests     skip steps 2 and 3: the benchmarks get the whole budget
#   --python PY    the interpreter to use (default: $PYTHON, else python3, else python:
#                  the first that imports jax)
#   --total-s N    the time budget of the whole check, seconds
#   --dry-list     print each step's command and time limit, run nothing
# Exit status: 0 when every step that ran passed, 1 when a test failed or a step timed out,
# 2 on bad arguments, 3 when a GPU was expected and JAX has none (use --cpu for a dry run).
set -uo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"

usage() { sed -n '2,/^[^#]/p' "$0" | sed -n 's/^# \{0,1\}//p'; }

MODE=gpu; QUICK=""; UPDATE=""; DRY=""; TESTS=1; PY="${PYTHON:-}"; TOTAL=450; OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --cpu) MODE=cpu ;;
    --quick) QUICK="--quick" ;;
    --update-docs) UPDATE=1 ;;
    --no-tests) TESTS="" ;;
    --dry-list) DRY=1 ;;
    --python) PY="${2:?--python needs an interpreter}"; shift ;;
    --total-s)
      TOTAL="${2:?--total-s needs seconds}"; shift
      case "$TOTAL" in ''|*[!0-9]*) echo "[gpu_check] --total-s takes whole seconds, got '$TOTAL'" >&2; exit 2 ;; esac ;;
    -*) echo "[gpu_check] unknown option '$1'; see benchmarks/gpu_check.sh --help" >&2; exit 2 ;;
    *)
      if [ -n "$OUT" ]; then echo "[gpu_check] one output folder only, got '$OUT' and '$1'" >&2; exit 2; fi
      OUT="$1" ;;
  esac
  shift
done
OUT="${OUT:-gpu_check_out}"
if [ -z "$PY" ]; then  # the machine's Python that has JAX: python3, else python
  PY=python3
  if [ -z "$DRY" ] && ! python3 -c "import jax" >/dev/null 2>&1 && python -c "import jax" >/dev/null 2>&1; then
    PY=python
  fi
fi

export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # test workers and torch peers share one GPU
export NVIDIA_TF32_OVERRIDE=0  # float32 is float32 in cuBLAS/cuDNN (torch); gpu_bench sets JAX's
export MPLBACKEND=Agg
if [ "$MODE" = cpu ]; then
  export JAX_PLATFORMS=cpu CUDA_VISIBLE_DEVICES=""
  EXPECT=cpu
else
  EXPECT=gpu
fi

RULES_S=$(( TOTAL / 3 ))  # the rule table's share of the budget (150 s of the default 450)
START=$(date +%s)
left() { echo $(( TOTAL - ($(date +%s) - START) )); }
FAILED=0

# step NAME LIMIT_S CMD...: run CMD with a time limit, log to OUT/NAME.log, record the outcome.
step() {
  local name="$1" limit="$2"; shift 2
  if [ -n "$DRY" ]; then
    printf '[dry-list] %-7s limit %4ss: %s\n' "$name" "$limit" "$*"
    return 0
  fi
  echo "== [$name] (limit ${limit} s) $*"
  local t0 rc; t0=$(date +%s)
  timeout -k 10 "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
  rc=${PIPESTATUS[0]}
  local secs=$(( $(date +%s) - t0 ))
  case $rc in
    0) echo "== [$name] passed in ${secs} s" ;;
    124|137) echo "== [$name] cut short by its time limit, ${limit} s (log: $OUT/$name.log)"; FAILED=1 ;;
    *) echo "== [$name] failed (exit $rc) after ${secs} s (log: $OUT/$name.log)"; FAILED=1 ;;
  esac
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$secs" "$limit" >> "$OUT/steps.tsv"
  return $rc
}

# has PACKAGE: whether env.json says it imports (always "yes" in --dry-list, which probes nothing).
has() {
  [ -n "$DRY" ] && return 0
  "$PY" -c "import json,sys; sys.exit(0 if json.load(open('$OUT/env.json'))['packages']['$1']['ok'] else 1)"
}

if [ -z "$DRY" ]; then
  mkdir -p "$OUT" && rm -f "$OUT/steps.tsv"
  echo "[gpu_check] mode $MODE, budget $TOTAL s, output $OUT/, Python: $("$PY" --version 2>&1)"
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi 2>&1 | tee "$OUT/nvidia-smi.txt"
  else
    echo "[gpu_check] nvidia-smi is not on PATH (no NVIDIA driver here, or not in PATH)"
  fi
fi

step env 90 "$PY" -m benchmarks.gpu_env --out "$OUT/env.json" --expect "$EXPECT"
rc=$?
if [ -z "$DRY" ] && [ $rc -ne 0 ]; then
  [ $rc -eq 3 ] && exit 3
  echo "[gpu_check] cannot go on without the device probe (see $OUT/env.json and above)" >&2
  exit 1
fi
if [ -z "$DRY" ]; then
  "$PY" -c "import funcgrad; print('[gpu_check] funcgrad from', funcgrad.__file__)" || exit 1
fi

MODELS_S=90
JOBS=6  # pytest processes at once on the GPU machine's 16 cores (one GPU, no preallocation)
[ "$MODE" = cpu ] && JOBS=2
if [ -z "$TESTS" ]; then
  RULES_S=0; MODELS_S=0
  echo "[gpu_check] --no-tests: skipping the model and rule tests"
elif has pytest; then
  step models "$MODELS_S" "$PY" -m benchmarks.gpu_tests --jobs 1 --deadline-s 80 \
    --junit-prefix "$OUT/models" tests/test_models.py
  step rules "$(( RULES_S + 15 ))" "$PY" -m benchmarks.gpu_tests --jobs "$JOBS" \
    --deadline-s "$RULES_S" --junit-prefix "$OUT/rules" tests/rules
else
  echo "[gpu_check] pytest is absent: skipping the model and rule tests"
fi

IMPLS="funcgrad jit,jax.grad jit"
if ! has torch; then
  echo "[gpu_check] torch is absent: the torch eager and torch.compile columns are skipped"
elif [ "$MODE" = gpu ] && [ -z "$DRY" ] && ! "$PY" -c "import json, sys; sys.exit(0 if json.load(open('$OUT/env.json'))['torch_device']['cuda'] else 1)"; then
  echo "[gpu_check] torch is installed without CUDA: skipping its columns (they would time a CPU)"
else
  IMPLS="$IMPLS,torch eager,torch.compile"
fi
DOCARG=()
[ -n "$UPDATE" ] && DOCARG=(--update-doc docs/performance.md)
# The benchmarks get what is left, less 45 s: 30 for a last workload's overrun, 15 for the summary.
# (--dry-list shows the worst case, as if every step before used its whole limit.)
if [ -n "$DRY" ]; then SPENT=$(( 90 + MODELS_S + RULES_S + ${TESTS:+15} + 0 )); else SPENT=$(( TOTAL - $(left) )); fi
BENCH_S=$(( TOTAL - SPENT - 45 ))
[ "$BENCH_S" -lt 60 ] && BENCH_S=60
step bench "$(( BENCH_S + 30 ))" "$PY" -m benchmarks.gpu_bench --out "$OUT" \
  --impls "$IMPLS" --deadline-s "$BENCH_S" $QUICK "${DOCARG[@]}"

step summary 15 "$PY" -m benchmarks.gpu_summary "$OUT"
[ -n "$DRY" ] && exit 0
echo "[gpu_check] done in $(( $(date +%s) - START )) s; tables in $OUT/summary.md"
exit $FAILED
