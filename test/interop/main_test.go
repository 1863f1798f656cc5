package interop

import (
	"os"
	"testing"

	"github.com/floodgate-p2p/floodgate/internal/testbin"
)

// floodgateBin is the path of the floodgate binary that TestMain builds
// once for all tests of the package; it is set before any test runs and
// never changed afterwards.
var floodgateBin string

func TestMain(m *testing.M) {
	os.Exit(testbin.Main(m, "interop", "FLOODGATE_INTEROP_BIN", &floodgateBin))
}
