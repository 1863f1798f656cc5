// Command testsummary turns the event stream of `go test -json` into a
// readable log and a closing summary.
//
// It exists because the project's test command must show two things a plain
// `go test` hides: which tests were skipped and why (a missing external tool
// silently turns an interoperability test into a no-op), and one compact list
// of everything that failed at the end of a long run. It reads events on
// standard input, echoes package results and the output of failing tests as
// they happen, prints the summary, and exits 1 when any test or package
// failed (including build failures), 0 otherwise.
//
// Usage:
//
//	go test -json ./... | go run ./scripts/testsummary
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// event is one record of the test2json stream; see `go doc test2json`.
type event struct {
	Action      string
	Package     string
	Test        string
	Output      string
	Elapsed     float64
	ImportPath  string
	FailedBuild string
}

// testKey names one test within its package.
type testKey struct{ pkg, test string }

// summary accumulates results while the stream is read.
type summary struct {
	out io.Writer

	// output holds each running test's lines until its result is known, so
	// that only failing and skipped tests cost screen space.
	output map[testKey][]string

	passed, failed, skipped int
	failedTests             []string
	skippedTests            []string
	pkgOK, pkgFail, pkgNone []string
	buildFail               []string
	lastPkgLine             map[string]string
	unparsed                int
}

func newSummary(out io.Writer) *summary {
	return &summary{
		out:         out,
		output:      make(map[testKey][]string),
		lastPkgLine: make(map[string]string),
	}
}

func main() {
	s := newSummary(os.Stdout)
	if err := s.read(os.Stdin); err != nil {
		fmt.Fprintf(os.Stderr, "testsummary: reading go test output: %v\n", err)
		os.Exit(2)
	}
	if !s.report() {
		os.Exit(1)
	}
}

// read consumes the whole event stream.
func (s *summary) read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	// Test output lines can be long (hex dumps, stack traces).
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line := sc.Bytes()
		var ev event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &ev) != nil {
			// Not an event: the go command itself speaking (module
			// downloads, vet-style errors). Pass it through untouched.
			s.unparsed++
			fmt.Fprintln(s.out, string(line))
			continue
		}
		s.handle(ev)
	}
	return sc.Err()
}

// handle folds one event into the summary and echoes what a reader needs
// to see as the run progresses.
func (s *summary) handle(ev event) {
	switch ev.Action {
	case "build-output":
		fmt.Fprint(s.out, ev.Output)
		return
	case "build-fail":
		s.buildFail = append(s.buildFail, ev.ImportPath)
		return
	}
	if ev.Test == "" {
		s.handlePackage(ev)
		return
	}
	k := testKey{ev.Package, ev.Test}
	switch ev.Action {
	case "output":
		s.output[k] = append(s.output[k], ev.Output)
	case "pass":
		s.passed++
		delete(s.output, k)
	case "skip":
		s.skipped++
		s.skippedTests = append(s.skippedTests,
			fmt.Sprintf("%s %s: %s", ev.Package, ev.Test, skipReason(s.output[k])))
		delete(s.output, k)
	case "fail":
		s.failed++
		s.failedTests = append(s.failedTests, ev.Package+" "+ev.Test)
		fmt.Fprintf(s.out, "--- FAIL: %s (%s)\n", ev.Test, ev.Package)
		for _, l := range s.output[k] {
			fmt.Fprint(s.out, "    ", l)
		}
		delete(s.output, k)
	}
}

// handlePackage deals with events that belong to a package as a whole.
func (s *summary) handlePackage(ev event) {
	switch ev.Action {
	case "output":
		// Package-level output is TestMain chatter, panics outside tests
		// and the final "ok"/"FAIL" line; all of it is worth showing
		// except the bare PASS/FAIL markers that repeat the result.
		o := ev.Output
		if o == "PASS\n" || o == "FAIL\n" || strings.HasPrefix(o, "=== ") {
			return
		}
		fmt.Fprint(s.out, o)
		s.lastPkgLine[ev.Package] = o
	case "pass":
		s.pkgOK = append(s.pkgOK, ev.Package)
	case "skip":
		s.pkgNone = append(s.pkgNone, ev.Package)
	case "fail":
		s.pkgFail = append(s.pkgFail, ev.Package)
		// A package can fail without any test failing: a build error, a
		// panic in TestMain, a leaked goroutine or a timeout. Flush what
		// its unfinished tests printed, since that is where the cause is.
		var pending []testKey
		for k := range s.output {
			if k.pkg == ev.Package {
				pending = append(pending, k)
			}
		}
		sort.Slice(pending, func(i, j int) bool { return pending[i].test < pending[j].test })
		for _, k := range pending {
			fmt.Fprintf(s.out, "--- UNFINISHED: %s (%s)\n", k.test, k.pkg)
			for _, l := range s.output[k] {
				fmt.Fprint(s.out, "    ", l)
			}
			delete(s.output, k)
		}
	}
}

// skipReason extracts the message a test passed to t.Skip from its output.
func skipReason(lines []string) string {
	var msg []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		msg = append(msg, t)
	}
	if len(msg) == 0 {
		return "(no reason given)"
	}
	// The skip message is normally the last thing the test printed.
	return msg[len(msg)-1]
}

// report prints the closing summary and tells whether the run was clean.
func (s *summary) report() bool {
	w := s.out
	fmt.Fprintln(w)
	fmt.Fprintln(w, "──── go test summary ────")
	fmt.Fprintf(w, "packages: %d ok, %d failed, %d without tests\n",
		len(s.pkgOK), len(s.pkgFail), len(s.pkgNone))
	fmt.Fprintf(w, "tests:    %d passed, %d failed, %d skipped\n", s.passed, s.failed, s.skipped)
	if len(s.skippedTests) > 0 {
		fmt.Fprintln(w, "skipped:")
		for _, t := range s.skippedTests {
			fmt.Fprintln(w, "  ", t)
		}
	}
	if len(s.buildFail) > 0 {
		fmt.Fprintln(w, "build failures:")
		for _, p := range s.buildFail {
			fmt.Fprintln(w, "  ", p)
		}
	}
	if len(s.pkgFail) > 0 {
		fmt.Fprintln(w, "failed packages:")
		for _, p := range s.pkgFail {
			fmt.Fprintln(w, "  ", p)
		}
	}
	if len(s.failedTests) > 0 {
		fmt.Fprintln(w, "failed tests:")
		for _, t := range s.failedTests {
			fmt.Fprintln(w, "  ", t)
		}
	}
	ok := len(s.pkgFail) == 0 && len(s.buildFail) == 0 && s.failed == 0
	// A stream with no package results at all means go test never got as
	// far as running anything (for example a broken go.mod); that is a
	// failure even though no test said so.
	if len(s.pkgOK)+len(s.pkgFail)+len(s.pkgNone) == 0 {
		fmt.Fprintln(w, "no package results were reported")
		ok = false
	}
	fmt.Fprintf(w, "finished %s\n", time.Now().Format(time.RFC3339))
	return ok
}
