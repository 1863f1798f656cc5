package interop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// debianPackage names the package that provides each external program, so
// that a skip message says how to get it.
var debianPackage = map[string]string{
	"aria2c":            "aria2",
	"opentracker":       "opentracker",
	"mktorrent":         "mktorrent",
	"transmission-show": "transmission-cli",
}

// needTool returns the path of an external program. When it is missing the
// test is skipped, or failed when CI=true, because there the test command
// has promised to install it and a silent skip would hide a broken setup.
func needTool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	msg := fmt.Sprintf("%s not found (Debian package %q; `bash scripts/test.sh` installs it as root)",
		name, debianPackage[name])
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and %s", msg)
	}
	t.Skip(msg)
	return ""
}

// proc is an external process started for one test. It is killed, and its
// waiter goroutine collected, by the test's cleanup.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	err     error         // the exit status; valid once done is closed
}

// startProc starts a long-running program (a seeder or a tracker) with its
// output going to a log file in the test's temporary directory. The
// process is stopped at the end of the test: SIGTERM, then SIGKILL after a
// grace period. If the test failed, the tail of the log is printed.
func startProc(t testing.TB, dir, name string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), filepath.Base(name)+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("creating log for %s: %v", name, err)
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	// The child has its own copy of the descriptor now.
	logFile.Close()
	p := &proc{name: filepath.Base(name), cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Logf("started %s (pid %d): %s", p.name, cmd.Process.Pid, strings.Join(args, " "))
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("last output of %s %s:\n%s", p.name, strings.Join(args, " "), tailFile(logPath, 40))
		}
	})
	return p
}

// stop terminates the process group and waits for the process to exit.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	pgid := -p.cmd.Process.Pid
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		<-p.done
	}
}

// exited tells whether the process has already ended, with its status.
func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// waitListening waits until something accepts TCP connections on addr,
// failing the test early if p dies first.
func waitListening(t testing.TB, p *proc, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if done, perr := p.exited(); done {
			t.Fatalf("%s exited (%v) before listening on %s; output:\n%s",
				p.name, perr, addr, tailFile(p.logPath, 40))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is not listening on %s after %v; output:\n%s",
				p.name, addr, timeout, tailFile(p.logPath, 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runResult is what a finished short-lived program left behind.
type runResult struct {
	out []byte
	err error
}

// run runs a program to completion with a hard timeout and returns its
// combined output and exit error. A timeout is reported as an error that
// says so, not as a bare "signal: killed".
func run(t testing.TB, timeout time.Duration, dir, name string, args ...string) runResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.SysProcAttr = childAttr()
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var buf bytes.Buffer
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	t.Logf("running %s %s", filepath.Base(name), strings.Join(args, " "))
	err := cmd.Run()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("%s did not finish within %v: %w", filepath.Base(name), timeout, err)
	}
	return runResult{out: buf.Bytes(), err: err}
}

// mustRun is run for steps that are not under test themselves (making a
// torrent for a transfer test): any failure ends the test.
func mustRun(t testing.TB, timeout time.Duration, dir, name string, args ...string) []byte {
	t.Helper()
	r := run(t, timeout, dir, name, args...)
	if r.err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), r.err, r.out)
	}
	return r.out
}

// tailFile returns the last n lines of a log file, for failure messages.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
