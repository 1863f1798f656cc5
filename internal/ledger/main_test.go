package ledger_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: the
// stores' pools must be fully closed by each test's cleanup.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
