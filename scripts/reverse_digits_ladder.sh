#!/usr/bin/env bash
# The budget ladder of issue 26: each model at its chosen setting, trained on 1x, 4x and 16x the
# CPU recipe's tokens (the LSTM 1x and 4x), 3 seeds each. Each rung is its own sweep,
# runs/<EXPERIMENT>/x<k>/sweep; a sweep run again trains only the points that are missing, so this
# script resumes (run it again after an interruption, or rung by rung: RUNGS="16").
#     LRS="rwkv7=6e-3 transformer=4e-3 transformer_modern=1.6e-2 lstm=8e-3 mlp=3.2e-2" BASE_SEED=45 \
#       WARMUPS="rwkv7=0.05 transformer=0.4 transformer_modern=0.05 lstm=0.05 mlp=0.05" \
#       REUSE_X1=runs/reverse_digits_cpu_uniform_warmup/sweep bash scripts/reverse_digits_ladder.sh
#     .venv/bin/python scripts/ladder_report.py runs/reverse_digits_cpu_ladder/uniform \
#       --out docs/results/reverse_digits_cpu_ladder --mark reverse-digits-ladder
# (the settings issue 26's ladder ran with: docs/results/reverse_digits_cpu_ladder/README.md)
# Settings (environment):
#   LRS         RUN=LR pairs: each model's chosen rate (from the sweep's report); the models run
#   WARMUPS     RUN=FRACTION pairs (optional): each model's chosen warmup (uniform protocol's
#               trainer.callbacks.init_args.warmup_steps, from scripts/reverse_digits_warmup.sh);
#               given, it is a grid key of every run, so the points are named as the warmup
#               sweep's (REUSE_X1 can then be that sweep's folder); every run of LRS needs one
#   PROTOCOL    uniform (default: the same optimizer rules for all) or best (the seed's rules)
#   RUNGS       token multiples (default "1 4 16"); LSTM_RUNGS those the LSTM takes (default "1 4")
#   SEEDS       seeds per rung (default 3: BASE_SEED, +1, +2)
#   BASE_SEED   the first seed (default 42, the recipe's trainer.seed). Issue 26's ladder runs at
#               45: the lr sweep's held-out seeds, which chose nothing, so no rung leans towards
#               the setting the selection seeds chose; with REUSE_X1 their points are the 1x rung.
#   BASE_STEPS  the recipe's steps at 1x (default 1300: recipes/reverse_digits_cpu.yaml)
#   REUSE_X1    a sweep folder (e.g. runs/reverse_digits_cpu_uniform/sweep) whose points at the
#               chosen rates and these seeds are the 1x rung already: the same settings, seeds and
#               steps, and training is deterministic, so they are copied rather than trained again
#               (only points of this PROTOCOL and BASE_STEPS steps; the others are trained)
#   ROOT_DIR    where the runs land (default runs)
#   RECIPE, EXPERIMENT, PARALLEL, SEQLAB, PYTHON, and EXTRA (more options for every sweep)
# Validation and checkpoints keep the recipe's interval, so a 16x run validates 64 times.
set -euo pipefail
SEQLAB=${SEQLAB:-.venv/bin/seqlab}
RECIPE=${RECIPE:-recipes/reverse_digits_cpu.yaml}
PROTOCOL=${PROTOCOL:-uniform}
EXPERIMENT=${EXPERIMENT:-reverse_digits_cpu_ladder/$PROTOCOL}
RUNGS=${RUNGS:-"1 4 16"}
LSTM_RUNGS=${LSTM_RUNGS:-"1 4"}
SEEDS=${SEEDS:-3}
BASE_SEED=${BASE_SEED:-42}
BASE_STEPS=${BASE_STEPS:-1300}
PARALLEL=${PARALLEL:-2}
ROOT_DIR=${ROOT_DIR:-runs}
PYTHON=${PYTHON:-.venv/bin/python}  # reads a copied point's metrics.json
if [ -z "${LRS:-}" ]; then
  echo "set LRS to each model's chosen rate, e.g. LRS='rwkv7=6e-3 transformer=3.2e-2 lstm=4e-3 mlp=4e-3'" >&2
  exit 2
fi
read -r -a extra <<< "${EXTRA:-}"
read -r -a seqlab <<< "$SEQLAB"
WARMUP_KEY=trainer.callbacks.init_args.warmup_steps
warmup_of() {  # the run's chosen warmup from WARMUPS, or nothing when WARMUPS is not set
  local pair
  for pair in ${WARMUPS:-}; do [ "${pair%%=*}" = "$1" ] && echo "${pair#*=}" && return; done
  if [ -n "${WARMUPS:-}" ]; then
    echo "WARMUPS has no warmup for run '$1'; give every run of LRS one (e.g. $1=0.05)" >&2
    return 2
  fi
}
for pair in $LRS; do warmup_of "${pair%%=*}" > /dev/null || exit 2; done
for k in $RUNGS; do
  runs=() grid=()
  for pair in $LRS; do
    run=${pair%%=*} lr=${pair#*=}
    if [ "$run" = lstm ] && [[ " $LSTM_RUNGS " != *" $k "* ]]; then continue; fi
    runs+=("$run") grid+=(--grid "$run:trainer.optimizer.lr=$lr")
    warmup=$(warmup_of "$run")
    [ -z "$warmup" ] || grid+=(--grid "$run:$WARMUP_KEY=$warmup")
  done
  [ ${#runs[@]} -gt 0 ] || continue
  if [ "$k" = 1 ] && [ -n "${REUSE_X1:-}" ]; then
    for run in "${runs[@]}"; do
      lr=""
      for pair in $LRS; do [ "${pair%%=*}" = "$run" ] && lr=${pair#*=}; done
      warmup=$(warmup_of "$run")
      for ((i = 0; i < SEEDS; i++)); do
        name="$run-lr=$lr${warmup:+-warmup_steps=$warmup}-seed$((BASE_SEED + i))"  # seqlab sweep's point name
        source=$REUSE_X1/$name dest=$ROOT_DIR/$EXPERIMENT/x1/sweep/$name
        [ -f "$source/metrics.json" ] && [ ! -f "$dest/metrics.json" ] || continue
        # Only a point of this protocol and this many steps is the rung's point.
        if ! "$PYTHON" -c 'import json, sys; m = json.load(open(sys.argv[1]))
sys.exit(m["protocol"] != sys.argv[2] or m["steps"] != int(sys.argv[3]))' \
          "$source/metrics.json" "$PROTOCOL" "$BASE_STEPS"; then
          echo "ladder rung x1: $source is not a $PROTOCOL run of $BASE_STEPS steps; not copied" >&2
          continue
        fi
        mkdir -p "$(dirname "$dest")" && rm -rf "$dest" && cp -r "$source" "$dest"
        echo "ladder rung x1: $name copied from $REUSE_X1"
      done
    done
  fi
  start=$(date +%s)
  status=0
  "${seqlab[@]}" sweep --recipe "$RECIPE" --protocol "$PROTOCOL" --parallel "$PARALLEL" \
    --runs "$(IFS=,; echo "${runs[*]}")" --seeds "$SEEDS" "${grid[@]}" \
    --trainer.experiment "$EXPERIMENT/x$k" --trainer.max_steps $((BASE_STEPS * k)) --trainer.root_dir "$ROOT_DIR" \
    --trainer.seed "$BASE_SEED" \
    "${extra[@]}" || status=$?
  echo "ladder rung x$k (${runs[*]}): $(( $(date +%s) - start )) s (exit $status)"
  [ "$status" = 0 ] || failed=1  # the other rungs still run; the script exits 1 at the end
done
exit "${failed:-0}"
