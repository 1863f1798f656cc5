package emulator

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/floodgate-p2p/floodgate/internal/terms"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func smallScenario(payments bool) Scenario {
	return Scenario{
		Size:         3 << 20,
		PieceLength:  64 << 10,
		RandomSeed:   7,
		StallTimeout: 15 * time.Second,
		MaxDuration:  60 * time.Second,
		OriginUpload: 2 << 20,
		Payments:     payments,
		Classes:      []terms.Class{{Name: "std", PricePerMiB: 20}},
		Groups: []Group{
			{Name: "p", Count: 3, Upload: 2 << 20, ArriveFrom: 0, ArriveTo: time.Second, Linger: -1, Class: "std"},
		},
	}
}

func TestPaidRunCompletesAndBalances(t *testing.T) {
	sc := smallScenario(true)
	rep, err := Run(context.Background(), sc, Options{TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if rep.TimedOut || rep.Stalled != 0 || rep.Classes["std"].Completed != 3 {
		t.Fatalf("report: %+v", rep)
	}
	if !rep.Ledger.Conserved || rep.Ledger.Minted == 0 {
		t.Fatalf("ledger: %+v", rep.Ledger)
	}
	var paid, earned int64
	for _, p := range rep.Peers {
		if p.FromOriginBytes+p.FromPeersBytes < sc.Size {
			t.Fatalf("%s received %d bytes of %d", p.ID, p.FromOriginBytes+p.FromPeersBytes, sc.Size)
		}
		// Each buyer pays floor(bytes·price/2^20) per uploader: at most the
		// full price, and at most one unit short per uploader it used.
		full, _ := terms.PriceFor(sc.Size, 20)
		if p.Paid > full || p.Paid < full-4 {
			t.Fatalf("%s paid %d, full price %d", p.ID, p.Paid, full)
		}
		paid += p.Paid
		earned += p.Earned
	}
	if paid != earned+rep.OriginEarned {
		t.Fatalf("paid %d != earned by peers %d + origin %d", paid, earned, rep.OriginEarned)
	}
	if rep.OffloadRatio < 0 || rep.OffloadRatio > 1 || rep.TotalBytes < 3*sc.Size {
		t.Fatalf("offload %v of %d bytes", rep.OffloadRatio, rep.TotalBytes)
	}
	path := filepath.Join(t.TempDir(), "r.json")
	if err := rep.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	data, _ := os.ReadFile(path)
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"makespan_s", "kumar_ross_s", "origin_bytes", "total_bytes", "offload_ratio", "stalled", "timed_out", "ledger", "classes", "peers"} {
		if _, ok := back[k]; !ok {
			t.Fatalf("report lacks %q", k)
		}
	}
}

func TestFreeRunMintsNothing(t *testing.T) {
	rep, err := Run(context.Background(), smallScenario(false), Options{TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Classes["free"].Completed != 3 || rep.Ledger.Minted != 0 || !rep.Ledger.Conserved {
		t.Fatalf("report: %+v ledger %+v", rep.Classes, rep.Ledger)
	}
	for _, p := range rep.Peers {
		if p.Paid != 0 || p.Earned != 0 {
			t.Fatalf("%s moved money in a free run", p.ID)
		}
	}
}

func TestMinWindowRate(t *testing.T) {
	for _, tc := range []struct {
		in   []int64
		want int64
	}{
		{[]int64{1, 2, 3}, 2},                                  // too short: average
		{[]int64{0, 0, 0, 0, 0, 10, 10, 10, 10, 10}, 10},       // start-up ignored
		{[]int64{0, 0, 0, 0, 0, 10, 10, 0, 10, 10, 10, 10}, 8}, // one dip in every window
	} {
		if got := minWindowRate(tc.in); got != tc.want {
			t.Errorf("minWindowRate(%v) = %d, want %d", tc.in, got, tc.want)
		}
	}
}
