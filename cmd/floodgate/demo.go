package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/floodgate-p2p/floodgate/internal/emulator"
	"github.com/floodgate-p2p/floodgate/internal/units"
)

func newDemoCmd() *cobra.Command {
	var jsonPath, logPath string
	cmd := &cobra.Command{
		Use:   "demo [--json REPORT.json]",
		Short: "Run a local swarm and watch it deliver content",
		Long: `Run a built-in scenario in this process: a tracker, the provider's origin
seeder (6 MiB/s upload) and eight paying peers with shaped links on their
own loopback addresses, arriving over a few seconds. Every verified piece
is paid for through the provider's broker: downloaders pay uploaders (and
the origin, into the provider's account) with hash-chain payments, and
uploaders redeem their earnings. A live view shows each peer's progress,
rates and money; the summary compares the finishing time with the
Kumar-Ross lower bound, shows how much the peers, not the origin,
delivered, and checks that the ledger balances. It finishes by itself in
well under a minute.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			sc := emulator.Demo()
			fmt.Fprintf(cmd.OutOrStdout(), "Floodgate demo: %s file, origin upload %s, %d peers\n\n",
				units.FormatBytes(sc.Size), units.FormatRate(sc.OriginUpload), countPeers(sc))
			return runScenario(cmd, sc, jsonPath, logPath)
		},
	}
	cmd.Flags().StringVar(&jsonPath, "json", "", "also write the JSON report (DESIGN §6 format) here")
	cmd.Flags().StringVar(&logPath, "log", "", "write every peer's debug log (connections, holds, channel opens and closes) to this file")
	return cmd
}

// runScenario runs sc with a live view, prints the summary and writes the
// JSON report if asked (demo and emulate), and the peers' debug log.
func runScenario(cmd *cobra.Command, sc emulator.Scenario, jsonPath, logPath string) error {
	out := cmd.OutOrStdout()
	opts := emulator.Options{}
	if logPath != "" {
		f, err := os.Create(logPath)
		if err != nil {
			return fmt.Errorf("--log: %w", err)
		}
		defer f.Close()
		opts.Logger = slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	live := newLiveView(out)
	opts.Observe = live.draw
	rep, err := emulator.Run(cmd.Context(), sc, opts)
	if err != nil {
		return err
	}
	live.finish()
	printSummary(out, sc, rep)
	if jsonPath != "" {
		if err := rep.WriteJSON(jsonPath); err != nil {
			return err
		}
		fmt.Fprintf(out, "report written to %s\n", jsonPath)
	}
	return nil
}

func countPeers(sc emulator.Scenario) int {
	n := 0
	for _, g := range sc.Groups {
		n += g.Count
	}
	return n
}

// liveView redraws a table of peers in place on a terminal, and prints a
// one-line status every few seconds otherwise.
type liveView struct {
	w     io.Writer
	tty   bool
	lines int
	last  time.Time
}

func newLiveView(w io.Writer) *liveView {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return &liveView{w: w, tty: tty}
}

func (v *liveView) draw(view emulator.View) {
	if !v.tty {
		if time.Since(v.last) < 5*time.Second {
			return
		}
		v.last = time.Now()
		done := 0
		for _, p := range view.Peers {
			if p.Done == view.Size {
				done++
			}
		}
		fmt.Fprintf(v.w, "t=%2.0fs  %d/%d peers complete  origin sent %s\n",
			view.Elapsed.Seconds(), done, len(view.Peers), units.FormatBytes(view.OriginTotal))
		return
	}
	var b strings.Builder
	if v.lines > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", v.lines)
	}
	fmt.Fprintf(&b, "\x1b[K t=%3.0fs   origin sending %-12s (total %s, earned %d units for the provider)\n", view.Elapsed.Seconds(), units.FormatRate(view.OriginUp), units.FormatBytes(view.OriginTotal), view.OriginEarned)
	for _, p := range view.Peers {
		frac := 0.0
		if view.Size > 0 {
			frac = float64(p.Done) / float64(view.Size)
		}
		const width = 30
		filled := int(frac * width)
		bar := strings.Repeat("█", filled) + strings.Repeat("·", width-filled)
		fmt.Fprintf(&b, "\x1b[K %-10s %-11s %s %5.1f%%  down %-12s up %-12s peers %-2d paid %-5d earned %d\n",
			p.ID, p.State, bar, 100*frac, units.FormatRate(p.Rate), units.FormatRate(p.Up), p.Peers, p.Paid, p.Earned)
	}
	v.lines = len(view.Peers) + 1
	io.WriteString(v.w, b.String())
}

func (v *liveView) finish() {
	if v.tty {
		fmt.Fprintln(v.w)
	}
}

func printSummary(w io.Writer, sc emulator.Scenario, r *emulator.Report) {
	fmt.Fprintf(w, "Summary\n")
	fmt.Fprintf(w, "  %-10s %-9s %-9s %8s %12s %12s %12s %8s %8s\n", "peer", "class", "complete", "time", "avg rate", "from origin", "from peers", "paid", "earned")
	var paid, earned int64
	for _, p := range r.Peers {
		fmt.Fprintf(w, "  %-10s %-9s %-9v %7.1fs %12s %12s %12s %8d %8d\n", p.ID, p.Class, p.Completed, p.CompletedAfterS,
			units.FormatRate(p.AvgRateBps), units.FormatBytes(p.FromOriginBytes), units.FormatBytes(p.FromPeersBytes), p.Paid, p.Earned)
		paid += p.Paid
		earned += p.Earned
	}
	fmt.Fprintf(w, "  %-10s %-9s %-9s %8s %12s %12s %12s %8s %8d\n", "origin", "", "", "", "", "", "", "", r.OriginEarned)
	fmt.Fprintf(w, "\n  money: downloaders paid %d units; peers earned %d and the provider's origin %d (redeemed at the broker)\n",
		paid, earned, r.OriginEarned)
	verdict := "balances"
	if !r.Ledger.Conserved {
		verdict = "DOES NOT BALANCE"
	}
	fmt.Fprintf(w, "  ledger: %d units minted, %d in all accounts together: the ledger %s\n", r.Ledger.Minted, r.Ledger.SumOfBalances, verdict)
	fmt.Fprintf(w, "\n  all peers done in %.1f s; the Kumar-Ross bound for this swarm is %.1f s (%.0f%% of optimal)\n",
		r.MakespanS, r.KumarRossS, 100*r.KumarRossS/max(r.MakespanS, 1e-9))
	fmt.Fprintf(w, "  origin uploaded %s of %s delivered: %.0f%% of the bytes came from peers\n",
		units.FormatBytes(r.OriginBytes), units.FormatBytes(r.TotalBytes), 100*r.OffloadRatio)
	if r.Stalled > 0 || r.TimedOut {
		fmt.Fprintf(w, "  WARNING: %d peer(s) stalled, timed out: %v\n", r.Stalled, r.TimedOut)
	}
}
