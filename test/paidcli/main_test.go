package paidcli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// floodgateBin is the binary under test. TestMain sets it before any test
// runs and nothing changes it afterwards.
var floodgateBin string

func TestMain(m *testing.M) { os.Exit(run(m)) }

// run builds the binary, runs the tests and removes the build directory. It
// is apart from TestMain so that its deferred cleanup runs before os.Exit.
func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "floodgate-paidcli-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "paidcli: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	floodgateBin = os.Getenv("FLOODGATE_PAIDCLI_BIN")
	if floodgateBin == "" {
		floodgateBin = filepath.Join(dir, "floodgate")
		if err := build(floodgateBin); err != nil {
			fmt.Fprintf(os.Stderr, "paidcli: %v\n", err)
			return 1
		}
	}
	code := m.Run()
	if code == 0 {
		// The only goroutines the tests start wait for child processes;
		// the cleanups must have collected every one of them.
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "paidcli: leaked goroutines: %v\n", err)
			return 1
		}
	}
	return code
}

// build compiles ./cmd/floodgate of the enclosing module into out.
func build(out string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/floodgate")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/floodgate: %w\n%s", err, b)
	}
	return nil
}

// moduleRoot is the nearest directory above the working directory (the
// package directory under `go test`) that holds go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
		dir = up
	}
}
