#!/usr/bin/env bash
# What one write costs in kernel crossings, thread wake-ups and heap
# allocations: runs confman_bench_cluster once under `perf stat` with
# syscall, scheduler and (if a uprobe on libc's malloc can be placed)
# allocation counters, and divides each count by the writes done. The
# counts cover the whole process: three members and the writer threads.
#
#   bench/cluster/per_write_counts.sh BUILD_DIR WORKLOAD [bench flags...]
#   e.g. bench/cluster/per_write_counts.sh build-rel a --storage memory
#
# Needs root (tracepoints) and Debian's linux-perf. Ends with one JSON line.
set -euo pipefail

build=${1:?usage: per_write_counts.sh BUILD_DIR WORKLOAD [flags]}
workload=${2:?usage: per_write_counts.sh BUILD_DIR WORKLOAD [flags]}
shift 2
bench="$build/bench/cluster/confman_bench_cluster"
[[ -x $bench ]] || { echo "no $bench: build confman_bench_cluster first" >&2; exit 2; }
command -v perf >/dev/null || { echo "perf not found: apt-get install linux-perf" >&2; exit 2; }

libc=$(ldd "$bench" | awk '/libc.so.6/ {print $3}')
events=(syscalls:sys_enter_fdatasync syscalls:sys_enter_pwrite64
        syscalls:sys_enter_writev syscalls:sys_enter_futex
        syscalls:sys_enter_epoll_wait syscalls:sys_enter_sendmsg
        syscalls:sys_enter_recvfrom sched:sched_switch sched:sched_wakeup)
probe_added=0
if perf probe -q -x "$libc" --add malloc 2>/dev/null; then
  probe_added=1
  events+=(probe_libc:malloc)
fi
cleanup() { if ((probe_added)); then perf probe -q -d probe_libc:malloc || true; fi; }
trap cleanup EXIT

out=$(mktemp)
perf stat -x, -o "$out.stat" $(printf -- '-e %s ' "${events[@]}") \
  "$bench" --workload "$workload" "$@" >"$out" 2>&1
grep -v '^{' "$out" || true
json=$(grep '^{' "$out" | tail -1)
writes=$(sed -E 's/.*"writes":([0-9]+).*/\1/' <<<"$json")
failed=$(sed -E 's/.*"failed":([0-9]+).*/\1/' <<<"$json")
done_writes=$((writes - failed))
((done_writes > 0)) || { echo "no write succeeded" >&2; exit 1; }

fields=""
while IFS=, read -r count _ event _; do
  [[ $count =~ ^[0-9]+$ ]] || continue
  name=${event##*:}
  name=${name#sys_enter_}
  per=$(awk -v c="$count" -v w="$done_writes" 'BEGIN {printf "%.3f", c / w}')
  printf '%-14s %10s  %8s per write\n' "$name" "$count" "$per"
  fields+=",\"${name}_per_write\":$per"
done < <(grep -v '^#' "$out.stat" | grep -v '^$')
rm -f "$out" "$out.stat"
echo "{\"bench\":\"per_write_counts\",\"workload\":\"$workload\",\"writes\":$done_writes$fields}"
