#!/usr/bin/env bash
# Issue 26's second knob: the uniform protocol's warmup, swept at each model's chosen rate, 3
# seeds at every point, then the winner at 3 held-out seeds. One `seqlab sweep`, so it resumes.
#     LRS="rwkv7=6e-3 transformer=1.6e-2 transformer_modern=8e-3 lstm=8e-3 mlp=8e-3" \
#       bash scripts/reverse_digits_warmup.sh
#     .venv/bin/python scripts/reverse_digits_results.py --sweep runs/reverse_digits_cpu_uniform_warmup/sweep ...
# The default warmup (0.05, 5% of the steps) at the chosen rate is a point the lr sweep already
# trained, at every seed: the same settings and seeds, and training is deterministic, so those
# points (selection and held-out) are copied from FROM instead of trained again. One of them,
# CHECK (default rwkv7, seed 42), is trained anyway and must give the copied point's metrics.json
# figures exactly; the script fails if it does not.
# Settings (environment):
#   LRS         RUN=LR pairs: each model's chosen rate (the lr sweep's report)
#   WARMUPS     the values (default "0 0.05 0.1"); DEFAULT the one FROM trained (default 0.05)
#   FROM        the lr sweep's folder (default runs/reverse_digits_cpu_uniform/sweep)
#   SEEDS, TEST_SEEDS, BASE_SEED (default 3, 3, 42), PARALLEL (2), RECIPE, EXPERIMENT, ROOT_DIR,
#   SEQLAB, PYTHON, EXTRA (more options for the sweep)
set -euo pipefail
SEQLAB=${SEQLAB:-.venv/bin/seqlab}
PYTHON=${PYTHON:-.venv/bin/python}
RECIPE=${RECIPE:-recipes/reverse_digits_cpu.yaml}
EXPERIMENT=${EXPERIMENT:-reverse_digits_cpu_uniform_warmup}
ROOT_DIR=${ROOT_DIR:-runs}
FROM=${FROM:-$ROOT_DIR/reverse_digits_cpu_uniform/sweep}
WARMUPS=${WARMUPS:-"0 0.05 0.1"}
DEFAULT=${DEFAULT:-0.05}
SEEDS=${SEEDS:-3}
TEST_SEEDS=${TEST_SEEDS:-3}
BASE_SEED=${BASE_SEED:-42}
PARALLEL=${PARALLEL:-2}
CHECK=${CHECK:-rwkv7}
if [ -z "${LRS:-}" ]; then
  echo "set LRS to each model's chosen rate, e.g. LRS='rwkv7=6e-3 lstm=8e-3'" >&2
  exit 2
fi
read -r -a extra <<< "${EXTRA:-}"
read -r -a seqlab <<< "$SEQLAB"
sweep=$ROOT_DIR/$EXPERIMENT/sweep
runs=() grid=()
for pair in $LRS; do
  run=${pair%%=*} lr=${pair#*=}
  runs+=("$run") grid+=(--grid "$run:trainer.optimizer.lr=$lr")
  for ((i = 0; i < SEEDS + TEST_SEEDS; i++)); do
    seed=$((BASE_SEED + i))
    source=$FROM/$run-lr=$lr-seed$seed dest=$sweep/$run-lr=$lr-warmup_steps=$DEFAULT-seed$seed
    [ -f "$source/metrics.json" ] && [ ! -f "$dest/metrics.json" ] || continue
    [ "$run" = "$CHECK" ] && [ "$seed" = "$BASE_SEED" ] && continue  # trained: the check below
    mkdir -p "$sweep" && rm -rf "$dest" && cp -r "$source" "$dest"
    echo "warmup sweep: $(basename "$dest") copied from $source"
  done
done
values=$(echo "$WARMUPS" | tr ' ' ,)
status=0
"${seqlab[@]}" sweep --recipe "$RECIPE" --protocol uniform --parallel "$PARALLEL" \
  --runs "$(IFS=,; echo "${runs[*]}")" --seeds "$SEEDS" --test_seeds "$TEST_SEEDS" "${grid[@]}" \
  --grid "trainer.callbacks.init_args.warmup_steps=$values" \
  --trainer.experiment "$EXPERIMENT" --trainer.root_dir "$ROOT_DIR" "${extra[@]}" || status=$?
# The check: the point trained here equals the lr sweep's, figure for figure.
for pair in $LRS; do
  run=${pair%%=*} lr=${pair#*=}
  [ "$run" = "$CHECK" ] || continue
  trained=$sweep/$run-lr=$lr-warmup_steps=$DEFAULT-seed$BASE_SEED/metrics.json
  "$PYTHON" - "$FROM/$run-lr=$lr-seed$BASE_SEED/metrics.json" "$trained" <<'EOF'
import json, sys
keys = ("val", "masked_acc", "exact_acc", "probe_masked_acc", "probe_exact_acc", "loss", "steps", "tested_step")
a, b = (json.load(open(path)) for path in sys.argv[1:3])
differ = [k for k in keys if a.get(k) != b.get(k)]
if differ:
    sys.exit(f"warmup sweep: the retrained point differs from the copied sweep's in {differ}; copies are not exact")
print(f"warmup sweep: {sys.argv[2]} equals {sys.argv[1]} in {', '.join(keys)}")
EOF
done
exit "$status"
