package paid

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test here starts engines, sessions and a provider; all of their
// goroutines must be gone when the tests end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
