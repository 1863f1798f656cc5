package emulator

import (
	"encoding/json"
	"os"
	"slices"
)

// Report is the JSON report of DESIGN §6. Rates are bytes per second.
type Report struct {
	MakespanS    float64                 `json:"makespan_s"`
	KumarRossS   float64                 `json:"kumar_ross_s"`
	OriginBytes  int64                   `json:"origin_bytes"`
	TotalBytes   int64                   `json:"total_bytes"`
	OffloadRatio float64                 `json:"offload_ratio"`
	Stalled      int                     `json:"stalled"`
	TimedOut     bool                    `json:"timed_out"`
	OriginEarned int64                   `json:"origin_earned"`
	Ledger       LedgerReport            `json:"ledger"`
	Classes      map[string]*ClassReport `json:"classes"`
	Peers        []PeerReport            `json:"peers"`
}

// LedgerReport is the broker's conservation check after the run. In a run
// without payments nothing is minted and the ledger is trivially conserved.
type LedgerReport struct {
	Minted        int64 `json:"minted"`
	SumOfBalances int64 `json:"sum_of_balances"`
	Conserved     bool  `json:"conserved"`
}

// ClassReport summarises the peers of one service class.
type ClassReport struct {
	Peers          int   `json:"peers"`
	Admitted       int   `json:"admitted"`
	Refused        int   `json:"refused"`
	Completed      int   `json:"completed"`
	TargetBps      int64 `json:"target_bps"`
	MetTarget      int   `json:"met_target"`
	P5RateBps      int64 `json:"p5_rate_bps"`
	MedianRateBps  int64 `json:"median_rate_bps"`
	DeadlineMisses int   `json:"deadline_misses"`
}

// PeerReport is one peer's outcome.
type PeerReport struct {
	ID               string `json:"id"`
	Group            string `json:"group"`
	Class            string `json:"class"`
	Completed        bool   `json:"completed"`
	AvgRateBps       int64  `json:"avg_rate_bps"`
	MinWindowRateBps int64  `json:"min_window_rate_bps"`
	FromOriginBytes  int64  `json:"from_origin_bytes"`
	FromPeersBytes   int64  `json:"from_peers_bytes"`
	Paid             int64  `json:"paid"`
	Earned           int64  `json:"earned"`
	Stalled          bool   `json:"stalled"`
	// CompletedAfterS is seconds from the peer's arrival to completion.
	CompletedAfterS float64 `json:"completed_after_s"`
}

// WriteJSON writes r to path, indented.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// minWindowRate is the lowest 5-second moving average over windows wholly
// inside [admission+5s, completion], given per-second byte samples from
// admission; if no window fits, the average over the whole series.
func minWindowRate(samples []int64) int64 {
	const startup, window = 5, 5
	if len(samples) < startup+window {
		return average(samples)
	}
	best := int64(-1)
	for i := startup; i+window <= len(samples); i++ {
		var sum int64
		for _, s := range samples[i : i+window] {
			sum += s
		}
		if avg := sum / window; best < 0 || avg < best {
			best = avg
		}
	}
	return best
}

func average(samples []int64) int64 {
	if len(samples) == 0 {
		return 0
	}
	var sum int64
	for _, s := range samples {
		sum += s
	}
	return sum / int64(len(samples))
}

// percentile returns the p-th percentile (0..100) by nearest rank.
func percentile(xs []int64, p float64) int64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	k := int(p / 100 * float64(len(s)-1))
	return s[k]
}
