#!/usr/bin/env bash
# Proves the README's quick start on a fresh Debian: builds a minimal root file
# system with mmdebstrap (no sudo, no Node.js, no bun), clones this repository's
# committed state into it, and runs the first command of the README's Quick
# start section exactly as written, as root in a chroot (the host's /proc, /sys
# and /dev bound in). Once "begin trace..." appears it provokes a drop (UDP to
# 127.0.0.1:9, where nothing listens), checks the drop line, stops the monitor
# with SIGINT like Ctrl-C and checks its summary; then runs `bun run test:unit`
# in the same system. With --all it then runs the second quick-start command
# (all the tests, ~30 min more). Everything is removed afterwards, also on
# failure: the mounts live in a private mount namespace, the rootfs in a
# temporary directory.
#
#   tests/quickstart.sh [--all] [bookworm|trixie]     (root; downloads a Debian)
#
# A manual proof, not part of `bun run test`: it needs the network and ~15 min.
set -euo pipefail

all=0
[ "${1:-}" = --all ] && { all=1; shift; }
suite=${1:-bookworm}
mirror=${SKBTRAIL_QS_MIRROR:-http://deb.debian.org/debian}
# Minutes allowed for setup + build until "begin trace..." (apt and npm downloads).
start_minutes=${SKBTRAIL_QS_MINUTES:-45}
repo=$(cd "$(dirname "$0")/.." && pwd)

say() { printf 'quickstart: %s\n' "$*"; }
die() { printf 'quickstart: FAIL: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root"
if ! command -v mmdebstrap >/dev/null; then
  say "installing mmdebstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
fi

# The first command of the first ```sh block of "## Quick start" in README.md.
line=$(awk '
  /^## /      { in_qs = ($0 == "## Quick start"); next }
  !in_qs      { next }
  /^```sh/    { in_block = 1; next }
  /^```/      { if (in_block) exit; next }
  in_block && NF && $1 !~ /^#/ { print; exit }
' "$repo/README.md")
[ -n "$line" ] || die "no command in the first sh block of README.md's Quick start"
tests_line=$(awk '
  /^## /      { in_qs = ($0 == "## Quick start"); next }
  !in_qs      { next }
  /^```sh/    { n++; in_block = (n == 2); next }
  /^```/      { in_block = 0; next }
  in_block && NF && $1 !~ /^#/ { print; exit }
' "$repo/README.md")
say "README's quick-start line: $line"

work=$(mktemp -d "${TMPDIR:-/var/tmp}/skbtrail-quickstart.XXXXXX")
rootfs=$work/rootfs
log=$work/run.log
pid=

cleanup() {
  local rc=$?
  # The whole process group of the chroot's command, even if its leader is gone
  # (apt must not write into the rootfs while it is deleted).
  if [ -n "$pid" ]; then
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.2; done
  fi
  if [ "$rc" -ne 0 ] && [ -s "$log" ]; then
    cp "$log" "$work.log" && echo "quickstart: the chroot's output is kept in $work.log" >&2
  fi
  # The bind mounts were made in the chroot's private mount namespace and died
  # with it; never delete through a mount that is somehow still here.
  if findmnt -rn -o TARGET | grep -q "^$work/"; then
    findmnt -rn -o TARGET | grep "^$work/" | sort -r | xargs -r -n1 umount -l || true
  fi
  if findmnt -rn -o TARGET | grep -q "^$work/"; then
    echo "quickstart: mounts left under $work; not deleting it" >&2
  else
    rm -rf --one-file-system "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "quickstart: FAIL: line $LINENO: $BASH_COMMAND" >&2' ERR
trap 'exit 130' INT TERM

say "building a minimal Debian $suite in $rootfs"
mmdebstrap --quiet --variant=minbase "$suite" "$rootfs" "$mirror"
for c in node npm sudo bun; do
  ! chroot "$rootfs" /bin/sh -c "command -v $c" >/dev/null || die "$c is in the fresh $suite rootfs"
done
say "fresh $suite: no node, npm, sudo or bun"

git clone -q "$repo" "$rootfs/root/skbtrail"
say "cloned $(git -C "$repo" rev-parse --short HEAD) (committed state) into /root/skbtrail"

# A clean environment, as after logging in as root. Networks that intercept TLS
# (this project's machines) need the host's extra CAs for npm and bun, and a
# proxy if the host uses one; an ordinary network needs neither.
envs=(HOME=/root TERM=dumb LANG=C.UTF-8)
if [ -n "${NODE_EXTRA_CA_CERTS:-}" ] && [ -r "$NODE_EXTRA_CA_CERTS" ]; then
  cp "$NODE_EXTRA_CA_CERTS" "$rootfs/etc/host-extra-ca.crt"
  envs+=(NODE_EXTRA_CA_CERTS=/etc/host-extra-ca.crt)
fi
for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
  [ -n "${!v:-}" ] && envs+=("$v=${!v}")
done

# Starts a command line in the chroot as root, in the background, in a private
# mount namespace (the mounts vanish with it) and its own process group
# (pid = pgid, so SIGINT reaches the whole line as Ctrl-C would); output to $log.
start_in_chroot() {
  (exec setsid unshare -m --propagation private /bin/bash -c '
    set -e
    r=$1; cmd=$2; shift 2
    mount --bind "$r" "$r"   # / is a mount point, as on a machine (unshare -m, ip netns need it)
    mount --rbind /proc "$r/proc"
    mount --rbind /sys "$r/sys"
    mount --rbind /dev "$r/dev"
    exec chroot "$r" /usr/bin/env -i "$@" /bin/bash -lc "cd /root/skbtrail && $cmd"
  ' _ "$rootfs" "$1" "${envs[@]}") >"$log" 2>&1 </dev/null &
  pid=$!
}
# Runs a command line in the chroot to its end; fails with the log's tail.
run_in_chroot() {
  local rc=0
  start_in_chroot "$1"
  wait "$pid" || rc=$?
  pid=
  [ "$rc" -eq 0 ] || { tail -n 60 "$log" >&2; die "'$1' failed ($rc)"; }
}

say "running it in the chroot (setup and build take minutes; log: $log)"
: >"$log"
start_in_chroot "$line"

deadline=$((SECONDS + start_minutes * 60))
until grep -q '^begin trace\.\.\.' "$log"; do
  if ! kill -0 "$pid" 2>/dev/null; then
    rc=0; wait "$pid" || rc=$?
    tail -n 40 "$log" >&2
    die "the quick-start line exited with $rc before 'begin trace...'"
  fi
  [ $SECONDS -lt $deadline ] || { tail -n 40 "$log" >&2; die "no 'begin trace...' after $start_minutes min"; }
  sleep 2
done
say "the drop monitor is ready after ${SECONDS}s: sending UDP to 127.0.0.1:9"

drop='UDP: 127\.0\.0\.1:[0-9]+ -> 127\.0\.0\.1:9 .*packet is dropped by kernel'
for _ in $(seq 1 60); do
  printf x >/dev/udp/127.0.0.1/9 || true
  sleep 0.5
  grep -Eq "$drop" "$log" && break
done
kill -INT -- "-$pid"
for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
kill -0 "$pid" 2>/dev/null && die "the drop monitor did not stop within 30 s of SIGINT"
rc=0; wait "$pid" || rc=$?; pid=
grep -Eq "$drop" "$log" || { tail -n 40 "$log" >&2; die "no drop line for the UDP sent to 127.0.0.1:9"; }
grep -E '^(begin trace|end trace|total events)' "$log" | sed 's/^/  | /'
grep -m1 -E "$drop" "$log" | sed 's/^/  | /'
grep -q '^total events: ' "$log" || die "no summary after SIGINT"
[ "$rc" -eq 0 ] || die "the quick-start line exited with $rc"
say "OK: '$line' works on a fresh Debian $suite"

say "running bun run test:unit in the chroot"
run_in_chroot "bun run test:unit"
grep -E '^ *[0-9]+ (pass|fail)$' "$log" | sed 's/^/  | /' || true
say "OK: bun run test:unit"

if [ "$all" = 1 ]; then
  [ -n "$tests_line" ] || die "no command in the second sh block of README.md's Quick start"
  say "running the README's test line in the chroot: $tests_line"
  run_in_chroot "$tests_line"
  grep -E '^ *[0-9]+ (pass|skip|fail)$|^Ran ' "$log" | sed 's/^/  | /' || true
  say "OK: '$tests_line' works on a fresh Debian $suite"
fi
