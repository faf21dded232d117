#!/usr/bin/env bash
# make soak: luksfuse under sustained verified load for SOAK_MINUTES (issue 16's soak).
# Usage: contrib/soak.sh [path/to/luksfuse]      (as root: it needs a loop device)
# Environment: SOAK_MINUTES (10), SOAK_DIR (where the temp dir goes; /dev/shm, a tmpfs, so
# the payloads' storage is fast and the daemon is what is measured; a disk directory works
# too), SOAK_RSS_BOUND_MIB (16), SOAK_SAMPLE_S (seconds between RSS samples, 10), SOAK_LOGS
# (target/soak: where fio's reports, the RSS samples and the summary are kept).
#
# Mount A: one detached LUKS2 header (4096-byte sectors, so 512-byte writes are partial
# sectors) serving two payloads at once:
#   A/fio   raw, 1 GiB: fio straight on the served file, four jobs in their own quarter,
#           libaio, direct=1, iodepth 32, verify=crc32c (random mixed sizes from 512 B to
#           1 MiB, random 4 KiB, sequential 1 MiB, sequential 4-128 KiB);
#   A/ext4  qcow2, 1 GiB: a loop device over the served file (--direct-io=on, so the loop
#           driver's reads reach the daemon, not the page cache), ext4 on it, and fio with
#           verify on two files inside; e2fsck -fn at the end.
# Mount B: its own LUKS1 header and raw payload, unmounted and remounted in a loop while A is
# under load. Each cycle mounts, checks what the previous cycle wrote (fio verify_only with
# the previous seed, and the SHA-256 of the whole served file), writes 32 MiB of random mixed
# sizes with a new seed (verified as written), checksums and unmounts (luksfuse umount, which
# returns once the daemon has synced and exited).
# fio verifies continuously while it writes (verify_backlog) and once more at the end;
# verify_fatal stops a job at its first bad block. At the end: e2fsck -fn on A/ext4,
# luksfuse umount of A (synced, exited), qemu-img check of its qcow2 payload.
#
# RSS: the VmRSS of A's daemon every SOAK_SAMPLE_S seconds; the soak fails when the mean of
# the last quarter of the samples exceeds the mean of the first quarter by more than
# SOAK_RSS_BOUND_MIB (16). Why that bound: the daemon's memory is bounded by design, one read
# buffer (<= 16 MiB, the largest reply) and one write scratch (<= 256 KiB) per FUSE thread,
# reused and never shrunk, plus imago's bounded qcow2 metadata caches, so it reaches a plateau
# in seconds (here 6.5 MiB after the mount, 9.2 MiB from the first sample under load to the
# end, not one KiB of drift). A leak is what the bound catches: glibc's smallest heap chunk is
# 32 bytes, and at the soak's request rate (about 4000 requests/s here, in the summary) one
# lost allocation per request passes 16 MiB between the quarters within 3 minutes. The first
# quarter includes the warm-up, which makes the check stricter, not looser.
#
# Prints a summary (minutes, bytes written and verified, verify errors, remount cycles, RSS
# first/max/last) and exits non-zero on any error. Mounts and the loop device are cleaned up
# on exit, error or signal.
set -euo pipefail
LUKSFUSE=$(realpath "${1:-target/release/luksfuse}")
MINUTES=${SOAK_MINUTES:-10}
RSS_BOUND_MIB=${SOAK_RSS_BOUND_MIB:-16}
SAMPLE_S=${SOAK_SAMPLE_S:-10}
LOGS=$(realpath -m "${SOAK_LOGS:-target/soak}")
export LC_ALL=C
[ "$(id -u)" = 0 ] || { echo "soak: needs root (losetup, mount)" >&2; exit 1; }
for cmd in fio cryptsetup qemu-img losetup mkfs.ext4 e2fsck python3; do
  command -v "$cmd" >/dev/null || { echo "soak: $cmd missing (make soak installs fio)" >&2; exit 1; }
done
work=$(mktemp -d "${SOAK_DIR:-/dev/shm}/luksfuse-soak.XXXXXX")
loopdev="" bg_pids=() checks=""
mounted() { grep -q " $1 " /proc/mounts; }
note() { echo "-- $(date -u +%T) $*" >&2; }
cleanup() {
  set +e
  for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${bg_pids[@]}"; do wait "$p" 2>/dev/null; done
  # (by /proc/mounts, not mountpoint(1): a mount whose daemon died fails its stat)
  mounted "$work/fs" && { umount "$work/fs" || umount -l "$work/fs"; }
  [ -n "$loopdev" ] && losetup -d "$loopdev"
  for m in "$work/a" "$work/b"; do
    mounted "$m" && { "$LUKSFUSE" umount "$m" || "$LUKSFUSE" umount -l "$m"; }
  done
  mkdir -p "$LOGS" && rm -f "$LOGS"/* && cp "$work"/*.json "$work"/*.err "$work"/*.log \
    "$work"/summary "$work"/errors "$LOGS"/ 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$work"
note "work directory $work ($(stat -f -c %T "$work"))"
mkdir a b fs
printf 'soak passphrase' > pass

# ---- Headers and payloads ----
truncate -s 1G fio.raw
cryptsetup luksFormat -q --type luks2 --header a-header.img --key-file pass --sector-size 4096 \
  --pbkdf argon2id --pbkdf-force-iterations 4 --pbkdf-memory 65536 fio.raw
qemu-img create -q -f qcow2 ext4.qcow2 1G
"$LUKSFUSE" format -q --type luks1 --pbkdf-force-iterations 1000 -d pass b-header.img
truncate -s 256M cycle.raw

"$LUKSFUSE" mount -d pass a-header.img fio.raw ext4.qcow2 a
pid_a=$("$LUKSFUSE" status --json a | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["pid"])')
note "mount A: daemon $pid_a serves a/fio and a/ext4"
loopdev=$(losetup -f --show --direct-io=on a/ext4)
mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 "$loopdev"
mount "$loopdev" fs
note "ext4 on $loopdev over a/ext4, mounted on fs"

# ---- fio ----
runtime=$((MINUTES * 60))
# Common to every job: asynchronous direct I/O at depth 32, each block checked by its CRC32C
# and fio's header (offset, length, seed).
fio_common=(--ioengine=libaio --direct=1 --iodepth=32 --verify=crc32c --verify_fatal=1
  --do_verify=1 --verify_state_save=0 --output-format=json)
# The jobs on mount A, each running rounds on its own until the deadline: a round writes its
# whole region (random jobs visit each block once) with a new seed, then reads every block
# back and verifies it, so a block is checked up to a whole round after it was written
# (a lost or stale write, or ciphertext changed at rest, fails the round). a/fio is cut
# into four 256 MiB quarters, one per job, so that no job overwrites another's blocks.
declare -A jobs=(
  [rand-mixed]="--filename=a/fio --offset=0 --size=256M --rw=randwrite
                --bssplit=512/10:4k/30:12k/10:64k/20:256k/20:1m/10"
  [rand-4k]="--filename=a/fio --offset=256M --size=256M --rw=randwrite --bs=4k"
  [seq-1m]="--filename=a/fio --offset=512M --size=256M --rw=write --bs=1m"
  [seq-mixed]="--filename=a/fio --offset=768M --size=256M --rw=write --bsrange=4k-128k"
  [ext4-rand]="--directory=fs --size=300M --rw=randwrite --bssplit=4k/50:16k/20:64k/20:1m/10"
  [ext4-seq]="--directory=fs --size=300M --rw=write --bs=256k"
)
# rounds JOB: rounds of JOB until the deadline, each reported in JOB-N.json
rounds() {
  local n=0
  while [ "$(date +%s)" -lt "$deadline" ] && [ ! -e stop ]; do
    n=$((n + 1))
    # shellcheck disable=SC2086 # the job's options are words
    fio "${fio_common[@]}" --randseed="$n" --name="$1" ${jobs[$1]} > "$1-$n.json" 2> "$1-$n.err" &&
      continue
    # stopped because another part failed: not a failure of its own, and no full report
    [ -e stop ] && { rm "$1-$n.json" "$1-$n.err"; return 0; }
    echo "$1 round $n failed" >> errors; return 1
  done
}
# fio_cycle SEED [--verify_only]: 32 MiB of random mixed sizes over b/cycle, the same blocks
# and contents for the same seed, so that --verify_only checks what an earlier run wrote.
fio_cycle() {
  local seed=$1; shift
  fio "${fio_common[@]}" --filename=b/cycle --size=256M --io_size=32M --randseed="$seed" \
    --name=cycle --rw=randwrite --bssplit=512/10:4k/40:64k/30:1m/20 "$@"
}

# ---- Mount B: unmount/remount cycles until the deadline ----
cycles() {
  local n=0 sum="" now
  while [ "$(date +%s)" -lt "$deadline" ] && [ ! -e stop ]; do
    n=$((n + 1))
    "$LUKSFUSE" mount -d pass b-header.img cycle.raw b || { echo "cycle $n: mount failed" >> errors; return 1; }
    if [ -n "$sum" ]; then
      fio_cycle $((n - 1)) --verify_only > "cycle-$n-verify.json" 2> "cycle-$n-verify.err" ||
        { echo "cycle $n: fio verify_only of cycle $((n - 1))'s data failed" >> errors; return 1; }
      now=$(sha256sum < b/cycle)
      [ "$now" = "$sum" ] ||
        { echo "cycle $n: checksum after remount differs from before unmount" >> errors; echo x >> checksum-errors; return 1; }
    fi
    fio_cycle "$n" > "cycle-$n.json" 2> "cycle-$n.err" ||
      { echo "cycle $n: fio write+verify failed" >> errors; return 1; }
    sum=$(sha256sum < b/cycle)
    "$LUKSFUSE" umount b || { echo "cycle $n: umount failed" >> errors; return 1; }
    echo "$n" > cycles-done
  done
}

start=$(date +%s)
deadline=$((start + runtime))
note "load for $MINUTES min: ${#jobs[@]} fio jobs on mount A (${!jobs[*]}), remount cycles of B"
declare -A what=()
# (rounds' stderr: bash's "Terminated" when the load is stopped; fio's goes to JOB-N.err)
for j in "${!jobs[@]}"; do rounds "$j" 2>/dev/null & what[$!]="fio $j"; done
cycles & what[$!]="remount cycles"
pid_cycles=$!
bg_pids=("${!what[@]}")

# Sample A's RSS while the load runs; stop everything at the first failure.
: > rss.log
failed=0 running=("${bg_pids[@]}")
while [ "${#running[@]}" -gt 0 ]; do
  if [ -r "/proc/$pid_a/status" ]; then
    awk -v t=$(($(date +%s) - start)) '/^VmRSS:/ { print t, $2 }' "/proc/$pid_a/status" >> rss.log
  else
    echo "mount A's daemon $pid_a is gone" >> errors; failed=1; break
  fi
  sleep "$SAMPLE_S"
  still=()
  for p in "${running[@]}"; do
    if kill -0 "$p" 2>/dev/null; then still+=("$p"); continue; fi
    if wait "$p"; then note "${what[$p]}: done"
    else note "${what[$p]}: FAILED"; echo "${what[$p]} failed" >> errors; failed=1; fi
  done
  running=("${still[@]}")
  [ "$failed" = 0 ] || break
done
if [ "$failed" != 0 ]; then
  note "stopping the load"
  touch stop # the loops stop after their current round or cycle; fio stops on SIGTERM
  for p in "${running[@]}"; do
    [ "$p" = "$pid_cycles" ] || kill $(pgrep -P "$p") 2>/dev/null || true
  done
  for p in "${running[@]}"; do wait "$p" 2>/dev/null || true; done
fi
bg_pids=()
elapsed=$(($(date +%s) - start))

# ---- After the load: the file system, then the summary ----
traffic=$({ "$LUKSFUSE" status --json a | python3 -c 'import json,sys
s = json.load(sys.stdin)[0]; print(s["bytes_written"], s["bytes_read"])'; } 2>/dev/null || echo "? ?")
umount fs && losetup -d "$loopdev" && loopdev=""
if [ -z "$loopdev" ]; then
  if e2fsck -fn a/ext4 > e2fsck.log 2>&1; then checks="e2fsck -fn of the ext4 clean"
  else echo "e2fsck -fn on a/ext4 is not clean" >> errors; cat e2fsck.log >&2; failed=1; fi
else
  echo "could not unmount ext4 or detach $loopdev: no e2fsck" >> errors; failed=1
fi
# The daemon must still sync and exit cleanly, and the qcow2 payload be consistent.
if "$LUKSFUSE" umount a; then
  checks+="${checks:+, }luksfuse umount of A done"
  if qemu-img check -q ext4.qcow2 > qemu-img-check.log 2>&1; then checks+=", qemu-img check clean"
  else echo "qemu-img check ext4.qcow2 failed" >> errors; cat qemu-img-check.log >&2; failed=1; fi
else
  echo "luksfuse umount of mount A failed" >> errors; failed=1
fi

# Totals over every fio run: bytes written, bytes read by verification, verify errors
# (EILSEQ, fio's verify failure) and other errors (a failed I/O, the daemon gone), per run.
python3 - "$elapsed" "$RSS_BOUND_MIB" "$traffic" "${!jobs[@]}" <<'EOF' > summary || failed=1
import glob, json, sys
elapsed, bound, traffic = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3].split()
EILSEQ = 84
runs = {j: glob.glob(f"{j}-[0-9]*.json") for j in sys.argv[4:]}
runs["cycles"] = glob.glob("cycle-*.json")
tot_w = tot_v = verr = oerr = 0
lines = []
for name, files in runs.items():
    w = v = ios = 0
    for f in files:
        try:
            text = open(f).read()
            jobs = json.loads(text[text.index("{"):])["jobs"]
        except (OSError, ValueError):
            oerr += 1  # no report: fio did not finish
            continue
        for j in jobs:
            # verify_only reports the writes it checked as if made: it made none
            w += 0 if f.endswith("-verify.json") else j["write"]["io_bytes"]
            v += j["read"]["io_bytes"]
            ios += j["write"]["total_ios"] + j["read"]["total_ios"]
            if j["error"] == EILSEQ: verr += 1
            elif j["error"]: oerr += 1
    tot_w += w; tot_v += v
    lines.append(f"  {name:10} {len(files):4} runs {w / 2**30:8.2f} GiB written {v / 2**30:9.2f} GiB verified"
                 f"  {ios / max(elapsed, 1):8.0f} requests/s")
verr += len(open("checksum-errors").readlines()) if glob.glob("checksum-errors") else 0
cycles = int(open("cycles-done").read()) if glob.glob("cycles-done") else 0
rss = [int(l.split()[1]) / 1024 for l in open("rss.log") if l.strip()] or [0.0]
q = max(len(rss) // 4, 1)
first_q, last_q = sum(rss[:q]) / q, sum(rss[-q:]) / q
print(f"soak: {elapsed / 60:.1f} minutes")
print(f"  written  {tot_w / 2**30:.2f} GiB, verified {tot_v / 2**30:.2f} GiB (fio's reads)")
print("\n".join(lines))
if len(traffic) == 2 and traffic[0] != "?":
    print(f"  mount A's counters: {int(traffic[0]) / 2**30:.2f} GiB written, "
          f"{int(traffic[1]) / 2**30:.2f} GiB read")
print(f"  verify errors {verr} (fio runs stopped by a bad block, checksum mismatches),"
      f" other errors {oerr}")
remounts = len(glob.glob("cycle-*-verify.json"))
print(f"  remount cycles of B: {cycles}; {remounts} remounts checked (fio verify_only of the"
      " previous cycle's blocks, SHA-256 of the whole 256 MiB file)")
print(f"  RSS of A's daemon: first {rss[0]:.1f} MiB, max {max(rss):.1f}, last {rss[-1]:.1f}"
      f" ({len(rss)} samples); quarter means {first_q:.1f} -> {last_q:.1f} MiB (bound +{bound:.0f})")
ok = verr == 0 and oerr == 0 and last_q <= first_q + bound
if last_q > first_q + bound:
    print("  RSS grew beyond the bound")
sys.exit(0 if ok else 1)
EOF
{
  [ -z "$checks" ] || echo "  after the load: $checks"
  if [ -s errors ]; then
    echo "errors:"; sed 's/^/  /' errors
    for f in *.err; do
      if [ -s "$f" ]; then echo "$f:"; head -n 20 "$f" | sed 's/^/  /'; fi
    done
  fi
} >> summary
[ ! -s errors ] || failed=1
if [ "$failed" != 0 ]; then echo "soak: FAILED" >> summary; else echo "soak: passed" >> summary; fi
cat summary
exit "$failed"
