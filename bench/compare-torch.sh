#!/bin/sh
# Side-by-side training throughput: spatium-bench's train_784_128_10_b4_t{1,2}
# against the PyTorch peer (../shared/peers/torch_mlp.py, 784-128-10, batch
# 64, one epoch of Fashion-MNIST) on the same machine, alternating ROUNDS
# times so both see the same load. Prints each figure and the ratio of the
# medians. Needs the peers' packages (shared/peers/install_deps.sh, as root).
# Usage: bench/compare-torch.sh [ROUNDS]   (from the repository root, after make)
set -eu
rounds=${1:-3}
peers=${PEERS_DIR:-../shared/peers}
bench=build/bin/spatium-bench
[ -x "$bench" ] || { echo "compare-torch: build first (make)" >&2; exit 1; }
[ -f "$peers/torch_mlp.py" ] || { echo "compare-torch: no $peers/torch_mlp.py" >&2; exit 1; }
unset OPENBLAS_CORETYPE
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
median() { sort -g "$1" | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
for t in 1 2; do
    : >"$tmp/sp$t"; : >"$tmp/pt$t"
    for r in $(seq "$rounds"); do
        "$bench" --filter "train_784_128_10_b4_t$t" | awk '{print $2}' >>"$tmp/sp$t"
        /usr/bin/python3 "$peers/torch_mlp.py" --task ce --threads "$t" --epochs 1 |
            tail -n 1 | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["train_samples_per_s"])' \
            >>"$tmp/pt$t"
    done
    sp=$(median "$tmp/sp$t"); pt=$(median "$tmp/pt$t")
    echo "threads $t: spatium $(tr '\n' ' ' <"$tmp/sp$t")| torch $(tr '\n' ' ' <"$tmp/pt$t")samples/s"
    awk -v a="$sp" -v b="$pt" -v t="$t" 'BEGIN {printf "threads %d: median spatium %.0f, torch %.0f, ratio %.2f\n", t, a, b, a / b}'
done
