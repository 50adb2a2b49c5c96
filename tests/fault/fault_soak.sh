#!/bin/sh
# Runs confman_fault over many seeds, one at a time, and names every seed
# that failed. Usage: fault_soak.sh path/to/confman_fault
#   CONFMAN_FAULT_SOAK_SEEDS    "first-last" (default 100-159)
#   CONFMAN_FAULT_SOAK_SECONDS  seconds per run (default 60)
# Every third seed runs over TCP, the others over the in-memory network.
set -u
binary=${1:?usage: fault_soak.sh path/to/confman_fault}
range=${CONFMAN_FAULT_SOAK_SEEDS:-100-159}
seconds=${CONFMAN_FAULT_SOAK_SECONDS:-60}
first=${range%-*}
last=${range#*-}
failed=""
seed=$first
while [ "$seed" -le "$last" ]; do
  network=memory
  if [ $((seed % 3)) -eq 0 ]; then network=tcp; fi
  if ! "$binary" --seed "$seed" --seconds "$seconds" --network "$network"; then
    failed="$failed $seed/$network"
  fi
  seed=$((seed + 1))
done
if [ -n "$failed" ]; then
  echo "fault soak: failed seeds:$failed"
  exit 1
fi
echo "fault soak: seeds $range passed"
