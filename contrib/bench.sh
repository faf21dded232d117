#!/usr/bin/env bash
# make bench: luksfuse against its peers, side by side in one run, as ratios.
# Usage: contrib/bench.sh path/to/luksfuse
set -euo pipefail
LUKSFUSE=$(realpath "${1:-target/release/luksfuse}")
RUNS=${RUNS:-5}
work=$(mktemp -d /tmp/luksfuse-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
printf 'bench passphrase' > pass
truncate -s 16M payload.raw

now_ns() { date +%s%N; }
# time_runs CMD...: average wall time in ms over $RUNS runs (after one warm-up run)
time_runs() {
  "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; return 1; }
  local start end
  start=$(now_ns)
  for _ in $(seq "$RUNS"); do "$@" >/dev/null 2>&1; done
  end=$(now_ns)
  echo $(( (end - start) / RUNS / 1000000 ))
}

echo "== unlock: luksfuse test-key vs cryptsetup open --test-passphrase ($RUNS runs each) =="
printf '%-34s %10s %10s %8s\n' header "luksfuse" "cryptsetup" "ratio"
bench_unlock() { # name, luksFormat args...
  local name=$1; shift
  cryptsetup luksFormat -q --header "h-$name.img" --key-file pass "$@" payload.raw
  local ours theirs
  ours=$(time_runs "$LUKSFUSE" test-key -d pass "h-$name.img")
  theirs=$(time_runs cryptsetup open --test-passphrase --key-file pass "h-$name.img")
  printf '%-34s %8s ms %8s ms %7.2fx\n' "$name" "$ours" "$theirs" \
    "$(echo "scale=4; $ours / $theirs" | bc -l 2>/dev/null || awk "BEGIN{print $ours/$theirs}")"
}
bench_unlock "luks1 pbkdf2-sha256 (1 s)" --type luks1 --hash sha256 --iter-time 1000
bench_unlock "luks2 argon2id 4 lanes 256 MiB" --type luks2 --pbkdf argon2id \
  --pbkdf-force-iterations 4 --pbkdf-memory 262144 --pbkdf-parallel 4
echo "(ratio = luksfuse time / cryptsetup time; goal <= 1.0)"
