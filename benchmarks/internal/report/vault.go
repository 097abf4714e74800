package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// The "HashiCorp Vault" section: the benchmarks of
// secrets/vault/benchmarks (BenchmarkVaultFleet, BenchmarkVaultLeaseChange),
// which live in the Vault module; their output is parsed like the others.

const (
	vaultFleet = "BenchmarkVaultFleet/role="
	vaultLease = "BenchmarkVaultLeaseChange/" // a prefix; the benchmark has no sub-benchmarks
)

// vaultFleetSizes are BenchmarkVaultFleet's numbers of processes.
var vaultFleetSizes = []int{1, 8, 32}

// The fleet's design (secrets/vault/benchmarks/fleet_test.go): leases of
// vaultTTL renewable to vaultMaxTTL, the connector's margins a quarter and
// an eighth of the TTL, for vaultRun; a static role rotating every
// vaultPeriod and on demand half a period after each of the first three
// scheduled rotations.
const (
	vaultTTL    = 2.0 // seconds
	vaultMaxTTL = 6.0
	vaultRun    = 15.0
	vaultPeriod = 3.0
)

// vaultRenewalsBound is the design's renewals per lease: a renewal lasts
// about TTL − margin − 1.25·lead, and the last one is capped at max_ttl.
func vaultRenewalsBound() float64 {
	margin, lead := vaultTTL/4, vaultTTL/8
	return math.Ceil((vaultMaxTTL-vaultTTL)/(vaultTTL-margin-1.25*lead)) + 1
}

type vaultSection struct {
	Count                       int
	TTL, MaxTTL, Margin, Lead   string
	Run, Period, RenewalsBound  string
	Renewal                     string // how long a renewal lasts, by design
	Dynamic                     []vaultDynamicRow
	Static                      []vaultStaticRow
	Lease                       []vaultLeaseRow
	LeaseOps                    string // rounds per run
	CachedP50, NewLeaseP50      string // ms
	ReadExtra                   string // p50 ms over the cached login
	RevokedExtra, ReadReference string
	NewLeaseRatio, PlainRatio   string // op by op, over the cached login
	// Separately is set when the section's runs are not the document's
	// (BENCH_VAULT_DATE): when and where they ran.
	Separately *vaultApart
}

type vaultApart struct{ Date, Commit, Load string }

type vaultDynamicRow struct {
	Processes, Leases, Renewals, RenewalsMax, Ended, Reads, Renews string
	Token, CallsPerSecond, PastEnd, Rejected, Failed               string
}

type vaultStaticRow struct {
	Processes, Reads, ReadsScheduled, ReadsOnDemand  string
	RejectedScheduled, RejectedOnDemand, RejectedMax string
	Rotations, Token, Failed                         string
}

type vaultLeaseRow struct {
	Case, What, P50, Mean, Ratio, Bytes, Allocs string
}

// vault returns the Vault section, nil if nothing of it was measured.
func (r *results) vault() *vaultSection {
	dyn := func(n int) string { return fmt.Sprintf("%sdynamic/processes=%d", vaultFleet, n) }
	static := func(n int) string { return fmt.Sprintf("%sstatic/processes=%d", vaultFleet, n) }
	count := 0
	for _, name := range r.names {
		if strings.HasPrefix(name, vaultFleet) || strings.HasPrefix(name+"/", vaultLease) {
			for _, v := range r.vals[name] {
				count = max(count, len(v))
			}
		}
	}
	if count == 0 {
		return nil
	}
	margin, lead := vaultTTL/4, vaultTTL/8
	v := &vaultSection{
		Count: count,
		TTL:   num(vaultTTL) + " s", MaxTTL: num(vaultMaxTTL) + " s", Margin: asDuration(margin).String(), Lead: asDuration(lead).String(),
		Run: num(vaultRun) + " s", Period: num(vaultPeriod) + " s", RenewalsBound: num(vaultRenewalsBound()),
		Renewal: num(vaultTTL-margin-1.25*lead) + " s",
	}
	// A figure and its range over the runs, where they differ.
	ranged := func(name, unit string) string {
		m, lo, hi := r.med(name, unit), r.lo(name, unit), r.hi(name, unit)
		if lo == hi || math.IsNaN(m) {
			return num(m)
		}
		return fmt.Sprintf("%s (%s–%s)", num(m), num(lo), num(hi))
	}
	for _, n := range vaultFleetSizes {
		d := dyn(n)
		v.Dynamic = append(v.Dynamic, vaultDynamicRow{
			Processes: strconv.Itoa(n),
			Leases:    ranged(d, "leases/process"), Renewals: ranged(d, "renewals/lease"), RenewalsMax: num(r.hi(d, "renewals/lease-max")),
			Ended: num(r.med(d, "leases-ended")), Reads: num(r.med(d, "reads/process/min")), Renews: num(r.med(d, "renewals/process/min")),
			Token: num(r.hi(d, "token-calls/process")), CallsPerSecond: num(r.med(d, "vault-calls/s")),
			PastEnd: num(r.hi(d, "sessions-past-end")), Rejected: num(r.hi(d, "rejected-logins")), Failed: num(r.hi(d, "failed-queries")),
		})
		s := static(n)
		v.Static = append(v.Static, vaultStaticRow{
			Processes: strconv.Itoa(n),
			Reads:     ranged(s, "reads/rotation/process"), ReadsScheduled: ranged(s, "reads/scheduled/process"),
			ReadsOnDemand: ranged(s, "reads/rotate-role/process"), RejectedScheduled: ranged(s, "rejected/scheduled/process"),
			RejectedOnDemand: ranged(s, "rejected/rotate-role/process"),
			RejectedMax:      num(math.Max(r.hi(s, "rejected/scheduled/process-max"), r.hi(s, "rejected/rotate-role/process-max"))),
			Rotations:        num(r.med(s, "rotations")), Token: num(r.hi(s, "token-calls/process")), Failed: num(r.hi(s, "failed-queries")),
		})
	}
	name := vaultLease[:len(vaultLease)-1] // the cases are metrics of one benchmark
	for _, c := range []struct{ key, what string }{
		{"cached", "the lease in use, logged in with before: one dial"},
		{"new-lease", "the first login with the lease the background refresh read ahead (the normal lease change): one dial of the new user, by this caller for all (a probe)"},
		{"lease-read", "a login that reads the lease itself (first use, or a retired lease with no successor read ahead): one Vault read, then the dial"},
		{"revoked-early", "the lease revoked before its end: the rejected dial (28P01), the refused renewal and the read, then the dial"},
		{"vault-read", "a Vault read alone (`Fetch` of a new lease: the server's `CREATE ROLE`)"},
		{"plain-login", "a lib/pq login with a lease's credential, without the connector"},
	} {
		ratio := "1"
		if c.key != "cached" {
			ratio = ranged(name, c.key+"/cached")
		}
		v.Lease = append(v.Lease, vaultLeaseRow{
			Case: c.key, What: c.what, P50: ranged(name, c.key+"-p50-ms"), Mean: num(r.med(name, c.key+"-mean-ms")),
			Ratio: ratio, Bytes: num(r.med(name, c.key+"-B/call")), Allocs: num(r.med(name, c.key+"-allocs/call")),
		})
	}
	cached := r.med(name, "cached-p50-ms")
	v.LeaseOps = num(r.med(name, "rounds"))
	v.CachedP50, v.NewLeaseP50 = num(cached), num(r.med(name, "new-lease-p50-ms"))
	v.NewLeaseRatio = num(r.med(name, "new-lease/cached"))
	v.ReadExtra = num(r.med(name, "lease-read-p50-ms") - cached)
	v.RevokedExtra = num(r.med(name, "revoked-early-p50-ms") - cached)
	v.ReadReference = num(r.med(name, "vault-read-p50-ms"))
	v.PlainRatio = num(r.med(name, "plain-login/cached"))
	if date := env("BENCH_VAULT_DATE", ""); date != "" {
		v.Separately = &vaultApart{Date: date, Commit: env("BENCH_VAULT_COMMIT", "?"), Load: env("BENCH_VAULT_LOAD", "?")}
	}
	return v
}

func asDuration(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
