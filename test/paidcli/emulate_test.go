package paidcli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tinyScenario is a paid swarm small enough to finish in a few seconds:
// the origin and three paying peers, each holding the default twice the
// price (80 units here). Such small balances used to stall a buyer now
// and then (2 to 4 runs in 80 under load): its money was locked in
// channels to peers that had finished and left, which it had not heard
// were closed, and it could not pay the origin (see docs/protocol.md,
// "Settlement").
const tinyScenario = `
size = "4MiB"
piece_length = "256KiB"
payments = true
random_seed = 1
max_duration = "60s"

[origin]
upload = "8MiB/s"

[[class]]
name = "standard"
min_rate = "0"
price_per_mib = 10

[[group]]
name = "peer"
count = 3
class = "standard"
upload = "4MiB/s"
download = "20MiB/s"
arrive = "0s"
behaviour = "honest"
`

// emulate --log writes every peer's debug log: the channel opens and
// closes that explain a slow run are in it, and a log that cannot be
// written is a clear error before anything runs.
func TestEmulateWritesThePeersLog(t *testing.T) {
	dir := t.TempDir()
	sc := filepath.Join(dir, "tiny.toml")
	if err := os.WriteFile(sc, []byte(tinyScenario), 0o644); err != nil {
		t.Fatal(err)
	}
	out := mustFG(t, dir, "emulate", sc, "--log", "peers.log")
	if !strings.Contains(out, "the ledger balances") || strings.Contains(out, "stalled") {
		t.Fatalf("emulate did not finish, every peer complete, with a balanced ledger:\n%s", out)
	}
	log, err := os.ReadFile(filepath.Join(dir, "peers.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), `msg="channel opened"`) || !strings.Contains(string(log), "peer=peer-1") {
		t.Fatalf("the log names no peer's channel opens:\n%.2000s", log)
	}
	_, errOut, err := fg(dir, "emulate", sc, "--log", filepath.Join(dir, "missing", "peers.log"))
	if err == nil || !strings.Contains(errOut, "--log") {
		t.Fatalf("an unwritable log: err %v, stderr %q", err, errOut)
	}
}
