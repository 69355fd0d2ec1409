#!/bin/sh
# Learning check on real data: trains 784-128-10 at 4 bits on Fashion-MNIST
# for 5 epochs (build/bin/spatium-fmnist, seed 1) and fails unless the last
# epoch's test accuracy reaches MIN (default 0.85, issue 3's goal). Training
# is deterministic, so the figure is the same on every run and machine.
# Usage: bench/check-learning.sh [MIN]   (from the repository root, after make)
set -eu
min=${1:-0.85}
dir=/usr/share/datasets/fashion-mnist
if [ ! -f "$dir/train-images-idx3-ubyte.gz" ]; then
    echo "check-learning: Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)" >&2
    exit 1
fi
out=$(build/bin/spatium-fmnist --epochs 5 --seed 1)
echo "$out"
acc=$(echo "$out" | awk '/^epoch/ {for (i = 1; i < NF; i++) if ($i == "accuracy") a = $(i + 1)} END {print a}')
[ -n "$acc" ] || { echo "check-learning: no accuracy in the output" >&2; exit 1; }
if awk -v a="$acc" -v m="$min" 'BEGIN {exit !(a >= m)}'; then
    echo "check-learning: test accuracy $acc >= $min"
else
    echo "check-learning: test accuracy $acc is below $min" >&2
    exit 1
fi
