package main

import (
	"strings"
	"testing"
	"time"
)

// reportWith is a finished local run with AWS rotations and a runbook, for
// the report's rejected-login figures.
func reportWith(rotations ...RotationResult) *Report {
	r := &Report{
		Mode: "local", Strategy: "single-user", Workers: 8, Rate: 2000, Seconds: 20,
		Window: time.Second, Recycle: 2 * time.Second,
		Roles:            []string{"demo_rotating_abc123"},
		Rotations:        rotations,
		PlannedRotations: len(rotations),
	}
	r.Rotating.OK, r.Rotating.RowsAcked, r.Rotating.RowsFound = 100, 100, 100
	r.Rotating.PerSecond = make([]Second, r.Seconds)
	return r
}

func awsResult(n int, rejected uint64, logged int64) RotationResult {
	return RotationResult{N: n, Kind: "single-user", Start: time.Duration(4*n) * time.Second, Open: -1, Close: -1,
		Rejected: rejected, Logged: logged, RotationRefused: 1}
}

func runbookResult(n int, rejected uint64, logged int64) RotationResult {
	return RotationResult{N: n, Kind: kindRunbook, Start: time.Duration(4*n) * time.Second, Open: -1, Close: -1,
		Rejected: rejected, Logged: logged}
}

func written(r *Report) string {
	var b strings.Builder
	r.write(&b)
	return b.String()
}

func TestReportRejectedLogins(t *testing.T) {
	for _, tc := range []struct {
		name string
		rep  *Report
		want []string // in the report, in this order
		not  []string
	}{{
		name: "within the bounds, the counts agree",
		// Each AWS rotation's server log has the rotation function's
		// refused AWSPENDING login besides the application's.
		rep: reportWith(awsResult(1, 1, 2), awsResult(2, 1, 2), awsResult(3, 2, 3), runbookResult(4, 5, 5)),
		want: []string{
			"rejected  server log",
			`password authentication failed for user "demo_rotating_abc123"`,
			"less the 3 caused by the rotation functions' setSecret",
			"per rotation (server log; Stats().AuthFailures agrees):",
			"AWS rotations  1, 1, 2: at most 1 per worker (8 workers) in each: holds",
			"runbook        5 for 8 workers",
		},
		not: []string{"EXCEEDED"},
	}, {
		name: "an AWS rotation over one per worker",
		rep:  reportWith(awsResult(1, 1, 2), awsResult(2, 9, 10), runbookResult(3, 5, 5)),
		want: []string{"AWS rotations  1, 9: at most 1 per worker (8 workers) in each: EXCEEDED in rotation 2"},
		not:  []string{"holds"},
	}, {
		name: "the counts disagree: the server log wins, the connector's are shown",
		rep:  reportWith(awsResult(1, 1, 2), runbookResult(2, 4, 5)),
		want: []string{"(server log; Stats().AuthFailures counted 1, 4):", "runbook        5 for 8 workers"},
		not:  []string{"agrees"},
	}, {
		name: "no server log: the connector's counts, and why",
		rep: func() *Report {
			r := reportWith(awsResult(1, 1, -1), runbookResult(2, 5, -1))
			r.ServerLogNote = "the demo cannot read the log of a server it did not start"
			return r
		}(),
		want: []string{
			"server log: not counted (the demo cannot read the log of a server it did not start)",
			"(Stats().AuthFailures; the server log was not read):",
			"AWS rotations  1: at most 1 per worker (8 workers) in each: holds",
			"runbook        5 for 8 workers",
		},
		not: []string{"password authentication failed"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			out := written(tc.rep)
			rest := out
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Errorf("report lacks %q (or has it out of order)", w)
					continue
				}
				rest = rest[i+len(w):]
			}
			for _, w := range tc.not {
				if strings.Contains(out, w) {
					t.Errorf("report has %q", w)
				}
			}
			checkTable(t, out)
			if t.Failed() {
				t.Logf("report:\n%s", out)
			}
		})
	}
}

// checkTable checks the rotations table: every cell of the columns starts
// where its header does, and no line ends in spaces.
func checkTable(t *testing.T, out string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	head := -1
	for i, l := range lines {
		if strings.HasSuffix(l, " ") {
			t.Errorf("line %d ends in spaces: %q", i+1, l)
		}
		if head < 0 && strings.Contains(l, "#  kind") {
			head = i
		}
	}
	if head < 0 {
		t.Fatal("no rotations table")
	}
	header := []rune(lines[head])
	var starts []int // where header cells start: after two spaces at least
	for i := 2; i < len(header); i++ {
		if header[i] != ' ' && header[i-1] == ' ' && header[i-2] == ' ' {
			starts = append(starts, i)
		}
	}
	if len(starts) != 12 {
		t.Fatalf("%d header cells, want 12: %q", len(starts), lines[head])
	}
	rows := 0
	for _, l := range lines[head+1:] {
		if strings.HasPrefix(l, "              window") {
			break
		}
		rows++
		row := []rune(l)
		for _, s := range starts {
			// A column's cells start where its header does: no cell
			// runs across that position.
			if s < len(row) && row[s] != ' ' && row[s-1] != ' ' {
				t.Errorf("row %q: a cell crosses column %d", l, s)
			}
		}
	}
	if rows < 3 {
		t.Errorf("%d rows under the header, want the first login, the rotations and the total", rows)
	}
}
