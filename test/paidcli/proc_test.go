package paidcli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// proc is one floodgate process started by a test. Its stdout and stderr go
// to files in the test's temporary directory, so a test can read what it
// printed while it runs. The test's cleanup kills it if it is still
// running and collects its waiter goroutine.
type proc struct {
	name    string
	cmd     *exec.Cmd
	outPath string
	errPath string
	done    chan struct{} // closed once the process has exited
	err     error         // exit status, valid once done is closed
}

// start runs `floodgate args...` in dir without waiting for it.
func start(t *testing.T, dir, name string, args ...string) *proc {
	t.Helper()
	logs := t.TempDir()
	p := &proc{
		name:    name,
		outPath: filepath.Join(logs, "stdout"),
		errPath: filepath.Join(logs, "stderr"),
		done:    make(chan struct{}),
	}
	stdout, err := os.Create(p.outPath)
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := os.Create(p.errPath)
	if err != nil {
		stdout.Close()
		t.Fatal(err)
	}
	p.cmd = exec.Command(floodgateBin, args...)
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = stdout, stderr
	// No terminal: get stays quiet instead of drawing a progress line.
	p.cmd.Stdin = nil
	err = p.cmd.Start()
	// The child holds its own copies of the descriptors.
	stdout.Close()
	stderr.Close()
	if err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Logf("%s (pid %d): floodgate %s", name, p.cmd.Process.Pid, strings.Join(args, " "))
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s stdout:\n%s\n%s stderr:\n%s", name, p.stdout(), name, tail(p.stderr(), 30))
		}
	})
	return p
}

// kill stops the process at once if it is still running and waits for it.
func (p *proc) kill() {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// wait waits for the process to exit on its own and returns its status.
func (p *proc) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		p.kill()
		t.Fatalf("%s did not exit within %v\nstdout:\n%s\nstderr:\n%s", p.name, timeout, p.stdout(), tail(p.stderr(), 30))
		return nil
	}
}

// interrupt sends SIGINT, as Ctrl-C would, and waits for a clean exit.
func (p *proc) interrupt(t *testing.T, timeout time.Duration) error {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		return fmt.Errorf("signalling %s: %w", p.name, err)
	}
	return p.wait(t, timeout)
}

func (p *proc) stdout() string { b, _ := os.ReadFile(p.outPath); return string(b) }
func (p *proc) stderr() string { b, _ := os.ReadFile(p.errPath); return string(b) }

// waitPrinted polls the process's stdout until re matches and returns the
// submatches; it fails the test if the process exits first or the time
// runs out.
func (p *proc) waitPrinted(t *testing.T, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if m := re.FindStringSubmatch(p.stdout()); m != nil {
			return m
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited (%v) before printing %q\nstdout:\n%s\nstderr:\n%s", p.name, p.err, re, p.stdout(), tail(p.stderr(), 30))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not print %q within %v\nstdout:\n%s\nstderr:\n%s", p.name, re, timeout, p.stdout(), tail(p.stderr(), 30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fg runs a short floodgate command to completion and returns its stdout
// and stderr; a non-zero exit is returned as the error.
func fg(dir string, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, floodgateBin, args...)
	cmd.Dir = dir
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// mustFG is fg for commands that must succeed.
func mustFG(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, errOut, err := fg(dir, args...)
	if err != nil {
		t.Fatalf("floodgate %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// exitCode is the exit status in err from a finished process (0 for nil),
// or -1 when the process did not exit normally.
func exitCode(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	default:
		return -1
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
