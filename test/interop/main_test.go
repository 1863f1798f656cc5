package interop

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"testing"

	"go.uber.org/goleak"
)

// floodgateBin is the path of the floodgate binary that TestMain builds
// once for all tests of the package; it is set before any test runs and
// never changed afterwards.
var floodgateBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

// runTests builds the binary, runs the tests and removes the build
// directory; it is separate from TestMain so that deferred cleanups run
// before os.Exit.
func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "floodgate-interop-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "interop: creating build directory: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)

	// FLOODGATE_INTEROP_BIN tests an already built binary (a release, or
	// one built with special flags) instead of building this checkout.
	floodgateBin = os.Getenv("FLOODGATE_INTEROP_BIN")
	if floodgateBin == "" {
		floodgateBin = filepath.Join(dir, "floodgate")
		if err := buildFloodgate(floodgateBin); err != nil {
			fmt.Fprintf(os.Stderr, "interop: %v\n", err)
			return 1
		}
	}

	code := m.Run()
	if code == 0 {
		// Every goroutine the tests start (process waiters) must have
		// been collected by the tests' cleanups.
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "interop: leaked goroutines: %v\n", err)
			return 1
		}
	}
	return code
}

// buildFloodgate compiles ./cmd/floodgate of this module into out.
func buildFloodgate(out string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("finding the go command to build floodgate: %w", err)
	}
	root, err := moduleRoot()
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

// moduleRoot finds the directory holding go.mod, starting from the test's
// working directory (the package directory under `go test`).
func moduleRoot() (string, error) {
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
			return "", fmt.Errorf("no go.mod above the test directory")
		}
		dir = parent
	}
}
