// Package testbin builds the floodgate binary for tests that run it as a
// real process (interoperability, the paid CLI, crash tests), so each of
// them does not carry its own copy of the build steps.
package testbin

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

// Main builds ./cmd/floodgate into a temporary directory (or uses the
// binary named by the environment variable envBin, to test a release or a
// special build), stores its path in *bin, runs the tests, checks that no
// goroutine leaked, and removes the build. name prefixes its messages.
// Call it as os.Exit(testbin.Main(m, ...)) from TestMain.
func Main(m *testing.M, name, envBin string, bin *string) int {
	dir, err := os.MkdirTemp("", "floodgate-"+name+"-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: creating build directory: %v\n", name, err)
		return 1
	}
	defer os.RemoveAll(dir)
	*bin = os.Getenv(envBin)
	if *bin == "" {
		*bin = filepath.Join(dir, "floodgate")
		if err := Build(*bin); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			return 1
		}
	}
	code := m.Run()
	if code == 0 {
		// The tests' goroutines wait for child processes; their cleanups
		// must have collected every one.
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "%s: leaked goroutines: %v\n", name, err)
			return 1
		}
	}
	return code
}

// Build compiles ./cmd/floodgate of this module into out.
func Build(out string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("finding the go command to build floodgate: %w", err)
	}
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", out, "./cmd/floodgate")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/floodgate: %w\n%s", err, b)
	}
	return nil
}

// ModuleRoot finds the directory holding go.mod, starting from the working
// directory (the package directory under `go test`).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
		dir = parent
	}
}
