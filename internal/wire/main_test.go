package wire

import (
	"testing"

	"go.uber.org/goleak"
)

// The codec starts no goroutines; this keeps it that way, including in the
// interoperability test that runs aria2c.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
