package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/term"

	"github.com/floodgate-p2p/floodgate/internal/engine"
	"github.com/floodgate-p2p/floodgate/internal/paid"
	"github.com/floodgate-p2p/floodgate/internal/units"
)

// progressLine draws a one-line status on a terminal and nothing otherwise.
type progressLine struct {
	w       io.Writer
	enabled bool
	width   int
	// money, if set, adds spend to the line.
	money func() string
}

func newProgressLine(f *os.File) *progressLine {
	fd := int(f.Fd())
	p := &progressLine{w: f, enabled: term.IsTerminal(fd), width: 100}
	if w, _, err := term.GetSize(fd); err == nil && w > 20 {
		p.width = w
	}
	return p
}

func (p *progressLine) show(s engine.Stats) {
	if !p.enabled {
		return
	}
	pct := 100.0
	if s.Length > 0 {
		pct = 100 * float64(s.Length-s.Left) / float64(s.Length)
	}
	eta := "--:--"
	if s.DownloadRate > 0 && s.Left > 0 {
		eta = formatETA(time.Duration(s.Left/s.DownloadRate) * time.Second)
	} else if s.Left == 0 {
		eta = "done"
	}
	line := fmt.Sprintf("%5.1f%%  %s of %s  down %s  up %s  peers %d (%d seeds)  ETA %s",
		pct, units.FormatBytes(s.Length-s.Left), units.FormatBytes(s.Length),
		units.FormatRate(s.DownloadRate), units.FormatRate(s.UploadRate), s.Peers, s.Seeds, eta)
	if p.money != nil {
		line += p.money()
	}
	if len(line) > p.width-1 {
		line = line[:p.width-1]
	}
	fmt.Fprintf(p.w, "\r\x1b[K%s", line)
}

func (p *progressLine) done() {
	if p.enabled {
		fmt.Fprintln(p.w)
	}
}

func formatETA(d time.Duration) string {
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%d:%02d", m, s)
}

// showSeed draws a seeder's line: what it uploaded and, for a paid torrent,
// what it earned (redeemed) and holds (received, not yet redeemed).
func (p *progressLine) showSeed(s engine.Stats, pay *paid.Session) {
	if !p.enabled {
		return
	}
	line := fmt.Sprintf("seeding  uploaded %s  up %s  peers %d", units.FormatBytes(s.Uploaded), units.FormatRate(s.UploadRate), s.Peers)
	if pay != nil {
		st := pay.Stats()
		line += fmt.Sprintf("  earned %d (+%d pending)", st.Earned, st.Pending)
	}
	if len(line) > p.width-1 {
		line = line[:p.width-1]
	}
	fmt.Fprintf(p.w, "\r\x1b[K%s", line)
}
