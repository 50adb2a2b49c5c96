#!/bin/sh
# Log append throughput: 256 B, 10 KB and 1 MiB entries with 1, 10 and 100
# concurrent appenders, each waiting for durability before its next append.
# Usage: bench/storage/log_append_matrix.sh BUILD_DIR SCRATCH_DIR
set -eu
bench="$1/bench/storage/confman_bench_storage"
dir="$2"
for bytes in 256 10240 1048576; do
  case "$bytes" in
    1048576) entries=400 ;;
    *) entries=3000 ;;
  esac
  for appenders in 1 10 100; do
    "$bench" --log-append --entry-bytes "$bytes" --appenders "$appenders" \
      --entries "$entries" --dir "$dir"
  done
done
