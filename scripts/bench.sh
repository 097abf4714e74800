#!/usr/bin/env bash
# Reruns every benchmark behind docs/benchmarks.md and rewrites that file.
#
#   scripts/bench.sh              # COUNT=5 runs of each benchmark
#   COUNT=10 scripts/bench.sh
#   OUT=/tmp/b.md scripts/bench.sh
#
# Needs Go and PostgreSQL's server binaries (apt-get install postgresql), or
# ROTATING_TEST_PG_DSN set to a superuser DSN of a server to use instead.
# Everything it starts listens on 127.0.0.1 only: the throwaway PostgreSQL
# server (internal/pgserver), the Secrets Manager endpoint (awssmtest) and
# the Vault-compatible server (vaulttest).
# It takes about twenty-five minutes with COUNT=5 (the Vault benchmarks about
# ten of them).
set -euo pipefail

cd "$(dirname "$0")/.."

COUNT="${COUNT:-5}"
OUT="${OUT:-docs/benchmarks.md}"
# Ops per run of each benchmark (go test -benchtime).
REAL_CONNECT_OPS="${REAL_CONNECT_OPS:-500}"
STORE_CALLS_OPS="${STORE_CALLS_OPS:-20}"
# The store=memory-lagging-1s case of BenchmarkStoreCalls costs over a
# second per op (the store lags the database by 1 s): fewer ops.
LAGGING_OPS="${LAGGING_OPS:-5}"
ROTATIONS="${ROTATIONS:-100}"
# Timed logins per run of each case of BenchmarkVaultLeaseChange (its
# login=new-lease case waits about a second for each).
VAULT_LEASE_OPS="${VAULT_LEASE_OPS:-30}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# A missing PostgreSQL must fail the run, not skip the benchmarks that need
# it (see internal/pgserver/pgtest).
export CI=true
# The benchmarks give every connection setting explicitly; make sure no PG*
# variable of the caller's changes what lib/pq does.
while IFS= read -r v; do
	unset "$v"
done < <(compgen -e | grep '^PG' || true)

: >"$work/commands"
# bench NAME ARGS...: runs go test with ARGS, output to $work/NAME.txt.
bench() {
	local name="$1" cmd="go test" arg
	shift
	for arg in "$@"; do
		if [[ "$arg" =~ [^A-Za-z0-9_./=:,-] ]]; then
			arg="'$arg'"
		fi
		cmd+=" $arg"
	done
	echo "$cmd" >>"$work/commands"
	echo "+ $cmd" >&2
	go test "$@" | tee "$work/$name.txt" >&2
}

export BENCH_LOAD_START
BENCH_LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
start="$(date +%s)"

common=(-run '^$' -benchmem -count "$COUNT" -timeout 60m)
bench root "${common[@]}" -bench '^BenchmarkConnectCached$' .
bench pgxroot "${common[@]}" -bench '^BenchmarkConnectCachedPgx$' ./pgxv5/
bench real "${common[@]}" -bench '^BenchmarkRealConnect$' -benchtime "${REAL_CONNECT_OPS}x" ./benchmarks/
bench calls "${common[@]}" -bench '^BenchmarkStoreCalls$/^store=(memory|awssm-pending-window)$' -benchtime "${STORE_CALLS_OPS}x" ./benchmarks/
bench lagging "${common[@]}" -bench '^BenchmarkStoreCalls$/^store=memory-lagging-1s$' -benchtime "${LAGGING_OPS}x" ./benchmarks/
bench cost "${common[@]}" -bench '^BenchmarkRotationCost$' -benchtime "${ROTATIONS}x" ./benchmarks/
bench fleet "${common[@]}" -bench '^BenchmarkFleet$' -benchtime 1x ./benchmarks/
# The Vault module's benchmarks (its own module; go.work lets them run from
# here). Their section of the document is built from this output too.
bench vault "${common[@]}" -bench '^BenchmarkVaultFleet$' -benchtime 1x ./secrets/vault/benchmarks/
bench vaultlease "${common[@]}" -bench '^BenchmarkVaultLeaseChange$' -benchtime "${VAULT_LEASE_OPS}x" ./secrets/vault/benchmarks/
# What the Secrets Manager Agent saves for the processes of one host: the
# figures of docs/smagent.md. One op is a host through three rotations
# (about 15 s).
bench agent "${common[@]}" -bench '^BenchmarkAgentStoreCalls$' -benchtime 1x ./integration/aws/

# The machine, for the document.
export BENCH_DURATION BENCH_LOAD_END BENCH_DATE BENCH_COMMIT BENCH_CPU BENCH_NPROC BENCH_MEM BENCH_KERNEL BENCH_GO BENCH_ROTATIONS BENCH_REAL_CONNECT_OPS BENCH_STORE_CALLS_OPS BENCH_LAGGING_OPS
BENCH_LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"
BENCH_DURATION="$(( ($(date +%s) - start + 30) / 60 )) min"
BENCH_DATE="$(date -u '+%Y-%m-%d %H:%M UTC')"
BENCH_COMMIT="unknown"
if commit="$(git rev-parse --short HEAD 2>/dev/null)"; then
	BENCH_COMMIT="\`$commit\`"
	if [ -n "$(git status --porcelain 2>/dev/null)" ]; then
		BENCH_COMMIT="$BENCH_COMMIT (with uncommitted changes)"
	fi
fi
BENCH_CPU="$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
BENCH_NPROC="$(nproc)"
BENCH_MEM="$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
BENCH_KERNEL="$(uname -sr)"
BENCH_GO="$(go version | sed 's/^go version //')"
BENCH_ROTATIONS="$ROTATIONS"
BENCH_REAL_CONNECT_OPS="$REAL_CONNECT_OPS"
BENCH_STORE_CALLS_OPS="$STORE_CALLS_OPS"
BENCH_LAGGING_OPS="$LAGGING_OPS"

mkdir -p "$(dirname "$OUT")"
go run ./benchmarks/internal/report \
	-root "$work/root.txt,$work/pgxroot.txt" \
	-bench "$work/real.txt,$work/calls.txt,$work/lagging.txt,$work/cost.txt,$work/fleet.txt,$work/vault.txt,$work/vaultlease.txt,$work/agent.txt" \
	-commands "$work/commands" >"$work/benchmarks.md"
mv "$work/benchmarks.md" "$OUT"
echo "wrote $OUT" >&2
