package paidcli

import (
	"os"
	"testing"

	"github.com/floodgate-p2p/floodgate/internal/testbin"
)

// floodgateBin is the binary under test. TestMain sets it before any test
// runs and nothing changes it afterwards.
var floodgateBin string

func TestMain(m *testing.M) {
	os.Exit(testbin.Main(m, "paidcli", "FLOODGATE_PAIDCLI_BIN", &floodgateBin))
}
