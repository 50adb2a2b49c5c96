#!/usr/bin/env bash
# Side by side: a 3-process confman cluster and a 3-member etcd cluster on
# 127.0.0.1, one after the other, driven by the same HTTP load generator
# (`confmanctl bench`; `--target etcd` speaks etcd's JSON gateway,
# /v3/kv/put with base64). Each workload gets a fresh cluster of each
# system, so no run inherits another's data.
#
#   bench/http/compare.sh [--build DIR] [--workloads "a b c d e"] [--only confman|etcd]
#
# Settings shared by both: heartbeat 30 ms, election timeout 150 ms (the
# confman defaults), fsync on every commit (both systems' default), data in
# a temporary directory on the same disk. etcd gets room for 1 MiB values
# (--max-request-bytes) and for the data (--quota-backend-bytes).
#
# Per system and workload it reports writes/s, p50, p99 and max latency,
# leader changes, per member the peak anonymous memory (sampled every
# 100 ms), the peak total RSS (VmHWM, which includes the pages of the data
# files both systems map) and the disk bytes, then the confman / etcd
# ratios, and ends with one JSON line.
set -euo pipefail
cd "$(dirname "$0")/../.."

build=build
workloads="a b c d e"
only=""
while (($#)); do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --workloads) workloads=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    *) sed -n '2,17p' "$0"; exit 2 ;;
  esac
done
node_bin="$PWD/$build/examples/node/confman-node"
ctl_bin="$PWD/$build/examples/ctl/confmanctl"
for b in "$node_bin" "$ctl_bin"; do
  [[ -x "$b" ]] || { echo "missing $b: build the targets confman-node and confmanctl" >&2; exit 2; }
done
if [[ "$only" != confman ]] && ! command -v etcd > /dev/null; then
  echo "etcd is not installed: apt-get install etcd-server" >&2
  exit 2
fi

work=$(mktemp -d /tmp/confman-compare-XXXXXX)
pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2> /dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2> /dev/null || true; done
  pids=()
}
trap 'stop_all; rm -rf "$work"' EXIT

free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null; then
      echo "$port"; return
    fi
  done
}

wait_http() {  # URL
  for _ in $(seq 1 200); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "nothing answered at $1" >&2
  return 1
}

# Samples every member's anonymous resident memory (heap and stacks; the
# data files both systems map are file-backed and left out) every 100 ms
# into $1, as the peak in MiB, until killed.
sample_anon() {  # out-file
  local peak=0 pid kib
  while :; do
    for pid in "${pids[@]}"; do
      kib=$(awk '/RssAnon/ {print $2}' "/proc/$pid/status" 2> /dev/null || echo 0)
      ((${kib:-0} > peak)) && peak=${kib:-0}
    done
    echo $((peak / 1024)) > "$1"
    sleep 0.1
  done
}

# Peak total resident MiB (VmHWM, mapped data pages included) of the
# largest member, and the largest data directory in bytes.
member_figures() {  # data-dir-prefix
  local max_rss=0 max_disk=0 pid rss disk i
  for i in 0 1 2; do
    pid=${pids[$i]}
    rss=$(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$pid/status")
    ((rss > max_rss)) && max_rss=$rss
    disk=$(du -sb "$1$((i + 1))" | cut -f1)
    ((disk > max_disk)) && max_disk=$disk
  done
  echo "$max_rss $max_disk"
}

start_confman() {  # dir
  local dir=$1 initial="" id
  declare -ga confman_urls=()
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/secret"
  local -a peers=()
  for id in 1 2 3; do
    peers[$id]="127.0.0.1:$(free_port)"
    initial+="${initial:+,}$id=${peers[$id]}"
  done
  for id in 1 2 3; do
    "$node_bin" --id "$id" --cluster-id compare --peer-listen "${peers[$id]}" \
      --client-listen 127.0.0.1:0 --announce-file "$dir/announce$id" \
      --initial-members "$initial" --data-dir "$dir/data$id" --secret-file "$dir/secret" \
      --log-level warning 2>> "$dir/member$id.log" &
    pids+=($!)
  done
  for id in 1 2 3; do
    for _ in $(seq 1 100); do
      [[ -s "$dir/announce$id" ]] && break
      sleep 0.1
    done
    if [[ ! -s "$dir/announce$id" ]]; then
      echo "confman member $id did not start:" >&2
      cat "$dir/member$id.log" >&2
      return 1
    fi
    confman_urls+=("$(sed -n 's/.*"client_url":"\([^"]*\)".*/\1/p' "$dir/announce$id")")
  done
  # A leader before the clock starts.
  for _ in $(seq 1 100); do
    curl -sf -o /dev/null "${confman_urls[0]}/readyz" && return 0
    sleep 0.1
  done
  echo "the confman cluster elected no leader" >&2
  return 1
}

confman_leader_changes() {
  local total=0 url n
  for url in "${confman_urls[@]}"; do
    n=$(curl -s "$url/v1/status" | sed -n 's/.*"leader_changes":\([0-9]*\).*/\1/p')
    ((${n:-0} > total)) && total=${n:-0}
  done
  # The first election counts once on every member; changes after it:
  echo $((total > 0 ? total - 1 : 0))
}

start_etcd() {  # dir
  local dir=$1 cluster="" id
  declare -ga etcd_urls=()
  local -a peer_ports=() client_ports=()
  for id in 1 2 3; do
    peer_ports[$id]=$(free_port)
    client_ports[$id]=$(free_port)
    cluster+="${cluster:+,}m$id=http://127.0.0.1:${peer_ports[$id]}"
  done
  for id in 1 2 3; do
    etcd --name "m$id" --data-dir "$dir/data$id" \
      --listen-peer-urls "http://127.0.0.1:${peer_ports[$id]}" \
      --initial-advertise-peer-urls "http://127.0.0.1:${peer_ports[$id]}" \
      --listen-client-urls "http://127.0.0.1:${client_ports[$id]}" \
      --advertise-client-urls "http://127.0.0.1:${client_ports[$id]}" \
      --initial-cluster "$cluster" --initial-cluster-state new \
      --initial-cluster-token compare \
      --heartbeat-interval 30 --election-timeout 150 \
      --max-request-bytes 10485760 --quota-backend-bytes 8589934592 \
      --log-level warn 2>> "$dir/etcd$id.log" &
    pids+=($!)
    etcd_urls+=("http://127.0.0.1:${client_ports[$id]}")
  done
  for url in "${etcd_urls[@]}"; do wait_http "$url/health"; done
}

etcd_leader_changes() {
  local total=0 url n
  for url in "${etcd_urls[@]}"; do
    n=$(curl -s "$url/metrics" | awk '/^etcd_server_leader_changes_seen_total/ {print int($2)}')
    ((${n:-0} > total)) && total=${n:-0}
  done
  echo $((total > 0 ? total - 1 : 0))
}

run_one() {  # system workload -> prints a JSON object
  local system=$1 workload=$2 dir="$work/$1-$2" endpoints result figures changes sampler
  mkdir -p "$dir"
  if [[ $system == confman ]]; then
    start_confman "$dir" || return 1
    endpoints=$(IFS=,; echo "${confman_urls[*]}")
    target=()
  else
    start_etcd "$dir" || return 1
    endpoints=$(IFS=,; echo "${etcd_urls[*]}")
    target=(--target etcd)
  fi
  sample_anon "$dir/anon" &
  sampler=$!
  result=$("$ctl_bin" --endpoints "$endpoints" bench "${target[@]}" --workload "$workload" \
             2> "$dir/bench.err" | tail -n 1)
  kill "$sampler"; wait "$sampler" 2> /dev/null || true
  if [[ $system == confman ]]; then changes=$(confman_leader_changes); else changes=$(etcd_leader_changes); fi
  figures=$(member_figures "$dir/data")
  stop_all
  rm -rf "$dir"/data*
  read -r rss disk <<< "$figures"
  # Append the per-member figures to the generator's own JSON object.
  echo "${result%\}},\"system\":\"$system\",\"leader_changes\":$changes,\"peak_anon_mib_per_member\":$(cat "$dir/anon"),\"peak_rss_mib_per_member\":$rss,\"disk_bytes_per_member\":$disk}"
}

field() {  # json name
  sed -n "s/.*\"$2\":\([0-9.e+-]*\).*/\1/p" <<< "$1"
}

printf '%-9s %-4s %10s %9s %9s %9s %8s %9s %9s %10s\n' system wl writes/s p50_ms p99_ms max_ms leaders anon_MiB rss_MiB disk_MiB
declare -A results
json="{"
for wl in $workloads; do
  for system in confman etcd; do
    [[ -n "$only" && "$only" != "$system" ]] && continue
    if ! r=$(run_one "$system" "$wl"); then
      echo "$system $wl: the cluster did not start; see above" >&2
      exit 1
    fi
    results[$system-$wl]=$r
    printf '%-9s %-4s %10s %9s %9s %9s %8s %9s %9s %10.1f\n' "$system" "$wl" \
      "$(field "$r" ops_per_s)" "$(field "$r" p50_ms)" "$(field "$r" p99_ms)" \
      "$(field "$r" max_ms)" "$(field "$r" leader_changes)" \
      "$(field "$r" peak_anon_mib_per_member)" "$(field "$r" peak_rss_mib_per_member)" \
      "$(awk -v b="$(field "$r" disk_bytes_per_member)" 'BEGIN {print b / 1048576}')"
    json+="\"$system-$wl\":$r,"
  done
  if [[ -z "$only" ]]; then
    c=${results[confman-$wl]} e=${results[etcd-$wl]}
    ratio() {
      awk -v a="$(field "$c" "$1")" -v b="$(field "$e" "$1")" \
        'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f", a / b }'
    }
    printf '%-9s %-4s %10s %9s %9s %9s %8s %9s %9s %10s\n' "ratio" "$wl" "$(ratio ops_per_s)" \
      "$(ratio p50_ms)" "$(ratio p99_ms)" "$(ratio max_ms)" "" \
      "$(ratio peak_anon_mib_per_member)" "$(ratio peak_rss_mib_per_member)" \
      "$(ratio disk_bytes_per_member)"
  fi
done
echo "${json%,}}"
