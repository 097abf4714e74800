// Command report turns the output of the benchmarks behind
// docs/benchmarks.md (go test -bench, run with -count N) into that
// document. scripts/bench.sh runs it; it is not meant to be run by hand.
//
// Every figure is the median of the -count runs, with the range over the
// runs where it matters. The machine description comes from environment
// variables the script sets (BENCH_*).
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// results holds every value reported for a benchmark and unit, one per run.
type results struct {
	vals  map[string]map[string][]float64
	names []string // in order of first appearance
	raw   []string // benchmark lines, as printed
	pgVer string
}

var procSuffix = regexp.MustCompile(`-\d+$`)

func parse(r io.Reader, res *results) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if _, v, ok := strings.Cut(line, "PostgreSQL server version: "); ok && res.pgVer == "" {
			res.pgVer = strings.TrimSpace(v)
		}
		if strings.HasPrefix(line, "goos:") || strings.HasPrefix(line, "goarch:") ||
			strings.HasPrefix(line, "pkg:") || strings.HasPrefix(line, "cpu:") {
			res.raw = append(res.raw, line)
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		res.raw = append(res.raw, line)
		name := procSuffix.ReplaceAllString(f[0], "")
		if res.vals[name] == nil {
			res.vals[name] = map[string][]float64{}
			res.names = append(res.names, name)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return fmt.Errorf("%q: %v", line, err)
			}
			res.vals[name][f[i+1]] = append(res.vals[name][f[i+1]], v)
		}
	}
	return sc.Err()
}

func (r *results) all(name, unit string) []float64 { return r.vals[name][unit] }

// med returns the median of the runs, or NaN if there is none.
func (r *results) med(name, unit string) float64 {
	v := slices.Clone(r.all(name, unit))
	if len(v) == 0 {
		return math.NaN()
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func (r *results) lo(name, unit string) float64 {
	v := r.all(name, unit)
	if len(v) == 0 {
		return math.NaN()
	}
	return slices.Min(v)
}

func (r *results) hi(name, unit string) float64 {
	v := r.all(name, unit)
	if len(v) == 0 {
		return math.NaN()
	}
	return slices.Max(v)
}

func (r *results) runs(name, unit string) int { return len(r.all(name, unit)) }

// pooled returns a per-second rate over all runs together, each run having
// made the same number of ops: the number of runs over the sum of the time
// per op. For logins per second, it is every login over all login time.
func (r *results) pooled(name, unit string) float64 {
	v := r.all(name, unit)
	if len(v) == 0 {
		return math.NaN()
	}
	var inv float64
	for _, x := range v {
		inv += 1 / x
	}
	return float64(len(v)) / inv
}

// costVerdict judges a rotated login against "one extra dial plus one
// store call" (two in the pending window): by count, exactly two dials and
// the expected store calls per rotated login; by time, the rotated login
// within the machine's noise of its budget. Any pause the connector could
// add (its backoff starts at 100 ms) would be ten times the budget, so a
// ratio up to 1.1 is taken as noise.
func (r *results) costVerdict(store string) string {
	name := rotationCost + store
	want := 1.0
	if store == "awssm-pending-window" {
		want = 2
	}
	p50, op := r.med(name, "rotated/budget"), r.med(name, "op-rotated/budget")
	counts := r.hi(name, "dials/rotation") == 2 && r.lo(name, "dials/rotation") == 2 &&
		r.hi(name, "store-calls/rotation") == want && r.lo(name, "store-calls/rotation") == want
	switch {
	case math.IsNaN(p50) || math.IsNaN(op):
		return "not measured"
	case counts && p50 <= 1 && op <= 1:
		return "met"
	case counts && p50 <= 1.1 && op <= 1.1:
		calls := "1 store call"
		if want != 1 {
			calls = num(want) + " store calls"
		}
		return fmt.Sprintf("met by count (2 dials, %s); time within noise (≤ 1.1) of the budget", calls)
	default:
		return "**not met**"
	}
}

// num formats v with a precision that suits its size.
func num(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "n/a"
	case v == math.Trunc(v):
		return commas(strconv.FormatFloat(v, 'f', 0, 64))
	case a >= 1000:
		return commas(strconv.FormatFloat(v, 'f', 0, 64))
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1 || a == 0:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
}

func commas(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func ratio(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "n/a"
	}
	return strconv.FormatFloat(v, 'f', 3, 64)
}

func times(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "n/a"
	}
	return num(v) + "×"
}

func verdict(ok bool, v float64) string {
	switch {
	case math.IsNaN(v):
		return "not measured"
	case ok:
		return "met"
	default:
		return "**not met**"
	}
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func main() {
	rootPaths := flag.String("root", "", "comma-separated outputs of the no-op-dial benchmarks (root package, pgxv5)")
	benchPaths := flag.String("bench", "", "comma-separated outputs of ./benchmarks/ and ./integration/aws/ runs")
	cmdPath := flag.String("commands", "", "file listing the commands that produced the outputs")
	flag.Parse()

	res := &results{vals: map[string]map[string][]float64{}}
	for _, p := range append(strings.Split(*rootPaths, ","), strings.Split(*benchPaths, ",")...) {
		if p == "" {
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			fatal(err)
		}
		err = parse(f, res)
		f.Close()
		if err != nil {
			fatal(err)
		}
	}
	var commands string
	if *cmdPath != "" {
		b, err := os.ReadFile(*cmdPath)
		if err != nil {
			fatal(err)
		}
		commands = strings.TrimSpace(string(b))
	}
	var out bytes.Buffer
	write(&out, res, commands)
	if _, err := os.Stdout.Write(out.Bytes()); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "report:", err)
	os.Exit(1)
}

// Benchmark names.
const (
	cachedDirect   = "BenchmarkConnectCached/direct"
	cachedRotating = "BenchmarkConnectCached/rotating"
	cachedParallel = "BenchmarkConnectCached/rotating-parallel"
	cachedPgx      = "BenchmarkConnectCachedPgx/ctx="
	realConnect    = "BenchmarkRealConnect/driver="
	storeCalls     = "BenchmarkStoreCalls/store="
	rotationCost   = "BenchmarkRotationCost/store="
	fleetRotation  = "BenchmarkFleet/rotation/processes="
	fleetRefresh   = "BenchmarkFleet/refresh/processes="
)

var (
	dialerCounts = []int{1, 16, 64, 256}
	fleetSizes   = []int{100, 1000}
)

const quota = 10_000 // AWS GetSecretValue requests per second

func joinRatios(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = ratio(x)
	}
	return strings.Join(s, ", ")
}

func cmp(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
