#!/usr/bin/env bash
# The MQAR CPU sweep behind docs/results/mqar_cpu/: every model at widths 32 and 64 and sequence
# lengths 64 and 128 (key-value pairs scaled with the length, as in Zoology's Figure 2), the same
# two learning rates for every model (the top two of Zoology's logspace(-4, -2, 4)) and 2 seeds
# at every point. Each (length, width) is its own sweep, runs/mqar_cpu/L<len>-w<width>/sweep;
# a sweep run again trains only the points that are missing, so this script resumes.
# Then two checks beside it, at length 64 and width 64 (CHECKS=0 skips them):
#   * runs/mqar_cpu/budget4x/L64-w64: attention at 4x the steps, at the rate the sweep chose;
#   * runs/mqar_cpu/learned_pos/L64-w64: the seed's Transformer (learned positions, as in
#     Zoology's attention) at both rates, 2 seeds.
#     bash scripts/mqar_cpu_sweep.sh   (PARALLEL=1 for one core; wall times: docs/results/mqar_cpu/README.md)
#     .venv/bin/python scripts/mqar_cpu_results.py   (the table, the plot and results.json)
set -euo pipefail
SEQLAB=${SEQLAB:-.venv/bin/seqlab}
PARALLEL=${PARALLEL:-2}
LENGTHS=${LENGTHS:-"64 128"}
WIDTHS=${WIDTHS:-"64 32"}
for len in $LENGTHS; do
  for w in $WIDTHS; do
    start=$(date +%s)
    "$SEQLAB" sweep --recipe recipes/mqar_cpu.yaml --parallel "$PARALLEL" --runs transformer_modern,rwkv7,lstm,mlp \
      --trainer.experiment "mqar_cpu/L$len-w$w" \
      --task.init_args.seq_len "$len" --task.init_args.num_kv_pairs $((len / 16)) \
      --task.init_args.batch_size 32 --trainer.max_steps 1200 \
      --trainer.val_every 300 --trainer.save_every 300 \
      --grid trainer.optimizer.lr=2.2e-3,1e-2 --seeds 2 \
      --grid "rwkv7:model.init_args.n_embd=$w" \
      --grid "transformer_modern:model.init_args.n_embd=$w" \
      --grid "transformer_modern:model.init_args.ffn_hidden=$((2 * w))" \
      --grid "lstm:model.init_args.embed_dim=$w" \
      --grid "lstm:model.init_args.hidden_sizes=[$w,$w]" \
      --grid "mlp:model.init_args.embed_dim=$w" \
      --grid "mlp:model.init_args.hidden_dim=$((2 * w))" || status=$?
    echo "mqar sweep L=$len w=$w: $(( $(date +%s) - start )) s (exit ${status:-0})"
    [ "${status:-0}" = 0 ] || failed=1  # the other sweeps still run; the script exits 1 at the end
    unset status
  done
done
[ "${CHECKS:-1}" = 0 ] && exit "${failed:-0}"
start=$(date +%s)
"$SEQLAB" sweep --recipe recipes/mqar_cpu.yaml --parallel "$PARALLEL" --runs transformer_modern \
  --trainer.experiment mqar_cpu/budget4x/L64-w64 \
  --task.init_args.seq_len 64 --task.init_args.num_kv_pairs 4 \
  --task.init_args.batch_size 32 --trainer.max_steps 4800 --trainer.val_every 1200 --trainer.save_every 1200 \
  --grid trainer.optimizer.lr=2.2e-3 --seeds 2 \
  --grid "transformer_modern:model.init_args.n_embd=64" --grid "transformer_modern:model.init_args.ffn_hidden=128" || failed=1
echo "mqar budget 4x L=64 w=64: $(( $(date +%s) - start )) s"
start=$(date +%s)
"$SEQLAB" sweep --recipe recipes/mqar_cpu.yaml --parallel "$PARALLEL" --runs transformer \
  --trainer.experiment mqar_cpu/learned_pos/L64-w64 \
  --task.init_args.seq_len 64 --task.init_args.num_kv_pairs 4 \
  --grid trainer.optimizer.lr=2.2e-3,1e-2 --seeds 2 --grid "transformer:model.init_args.n_embd=64" || failed=1
echo "mqar learned positions L=64 w=64: $(( $(date +%s) - start )) s"
exit "${failed:-0}"
