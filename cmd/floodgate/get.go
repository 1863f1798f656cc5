package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/floodgate-p2p/floodgate/internal/broker"
	"github.com/floodgate-p2p/floodgate/internal/identity"
	"github.com/floodgate-p2p/floodgate/internal/node"
	"github.com/floodgate-p2p/floodgate/internal/storage"
	"github.com/floodgate-p2p/floodgate/internal/units"
)

// settleTime bounds how long a finished paid download keeps serving so the
// peers it served can verify their pieces and pay.
const settleTime = 5 * time.Second

// A finished paid download stops waiting for its peers' payments once what
// they owe did not shrink for settleStall. It re-reads what they owe on
// every sign of change from the session, and at least every settlePoll.
const (
	settleStall = 300 * time.Millisecond
	settlePoll  = 20 * time.Millisecond
)

// awaiter is what waitForPayments needs of a paid session.
type awaiter interface {
	Awaited() int64
	AwaitedChanged() <-chan struct{}
}

// waitForPayments keeps a finished paid download serving while the peers
// it served still owe it and keep paying: pay after verify means they owe
// for our blocks of pieces they have not finished. It returns once nothing
// is owed, or the debts stopped shrinking (a stalled peer, or one that
// keeps what it owes), or settleTime passed, or ctx ended. show is called
// whenever what they owe changed.
func waitForPayments(ctx context.Context, p awaiter, show func()) {
	deadline := time.NewTimer(settleTime)
	defer deadline.Stop()
	poll := time.NewTicker(settlePoll)
	defer poll.Stop()
	last, shrank := p.Awaited(), time.Now()
	for last > 0 && time.Since(shrank) < settleStall {
		select {
		case <-p.AwaitedChanged():
		case <-poll.C:
		case <-deadline.C:
			return
		case <-ctx.Done():
			return
		}
		// Progress is a drop since the previous reading: while we serve
		// peers still downloading, what they owe rises as well as falls.
		now := p.Awaited()
		if now < last {
			shrank = time.Now()
		}
		if now != last {
			show()
		}
		last = now
	}
}

// paidQuote is what a paid download shows before it starts: its price
// and the buyer's balance.
type paidQuote struct {
	class   string
	perMiB  int64
	price   int64
	size    int64
	account string
	cert    identity.Certificate
	// balance delivers the buyer's balance (or the error fetching it),
	// asked for in the background so the broker round trip overlaps the
	// node's start-up.
	balance chan balanceResult
	// answered is closed once the balance is in (or failed): the node
	// opens no channel before, so the balance shown is the one before
	// this download locked anything.
	answered chan struct{}
	// answer is the balance, set before answered is closed.
	answer balanceResult
}

// knownBalance is the balance once the broker answered (see
// paid.Config.Balance); ok is false before, or if it could not tell.
func (q *paidQuote) knownBalance() (int64, bool) {
	select {
	case <-q.answered:
		return q.answer.units, q.answer.err == nil
	default:
		return 0, false
	}
}

type balanceResult struct {
	units int64
	err   error
}

// startQuote prices a paid download, refuses it when --max-spend cannot
// cover the price, and asks the broker for the buyer's balance in the
// background (show prints both). It registers the key with the broker
// (idempotent) when no valid saved certificate spares that round trip.
func startQuote(ctx context.Context, ps paidSetup, class string, maxSpend, size int64) (*paidQuote, error) {
	cls, err := ps.terms.Class(class)
	if err != nil {
		return nil, usageError{err}
	}
	price, err := cls.Price(size)
	if err != nil {
		return nil, err
	}
	if maxSpend > 0 && price > maxSpend {
		return nil, fmt.Errorf("the price %d exceeds --max-spend %d", price, maxSpend)
	}
	bc, err := node.Broker(ps.terms, ps.key)
	if err != nil {
		return nil, err
	}
	// The certificate `account register` saved saves a broker round trip;
	// without a valid one (another provider, expiring) register again.
	var reg broker.RegisterResponse
	if c := ps.savedCertificate(); c != nil {
		reg = broker.RegisterResponse{Account: c.Account, Certificate: *c}
	} else if reg, err = bc.Register(ctx); err != nil {
		return nil, fmt.Errorf("register with broker %s: %w", ps.terms.Broker, err)
	}
	q := &paidQuote{class: cls.Name, perMiB: cls.PricePerMiB, price: price, size: size,
		account: reg.Account, cert: reg.Certificate, balance: make(chan balanceResult, 1), answered: make(chan struct{})}
	go func() {
		defer bc.CloseIdleConnections()
		b, err := bc.Balance(ctx, reg.Account)
		q.answer = balanceResult{b, err}
		q.balance <- q.answer
		close(q.answered)
	}()
	return q, nil
}

// show waits for the balance and prints the quote. The balance is for
// the user's information (--max-spend was checked already), so a broker
// that cannot tell it is a warning: the download goes on, and it finds
// out about the money when it opens a channel.
func (q *paidQuote) show(w io.Writer) {
	b := <-q.balance
	if b.err != nil {
		fmt.Fprintf(w, "paid torrent: class %s at %d units/MiB; price %d units for %s (account %s)\nwarning: balance unavailable: %v\n",
			q.class, q.perMiB, q.price, units.FormatBytes(q.size), q.account, b.err)
		return
	}
	fmt.Fprintf(w, "paid torrent: class %s at %d units/MiB; price %d units for %s; your balance %d units (account %s)\n",
		q.class, q.perMiB, q.price, units.FormatBytes(q.size), b.units, q.account)
	if b.units < q.price {
		fmt.Fprintf(w, "warning: your balance does not cover the whole price; the download stops when it runs out\n")
	}
}

func newGetCmd() *cobra.Command {
	var (
		pf       peerFlags
		peers    []string
		class    string
		outDir   string
		timeout  time.Duration
		maxSpend int64
	)
	cmd := &cobra.Command{
		Use:   "get [--peer HOST:PORT]... [--class NAME] [--out DIR] TORRENT",
		Short: "Download a torrent's content",
		Long: `Download the content of TORRENT into DIR/NAME (NAME from the torrent).

Peers come from the torrent's trackers and from --peer. What is already on
disk is verified first and only missing pieces are fetched, so an
interrupted download resumes. The command exits 0 only when every piece is
verified on disk. On a terminal it shows a live progress line.`,
		Args: exactArgs(1, "exactly one TORRENT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			mi, err := loadTorrent(args[0])
			if err != nil {
				return err
			}
			if class != "" && len(mi.Floodgate) == 0 {
				return usagef("--class %q: this torrent has no Floodgate service classes (a plain torrent is downloaded for free)", class)
			}
			if maxSpend < 0 {
				return usagef("--max-spend must not be negative")
			}
			ps, err := pf.setupPaid(mi, "get")
			if err != nil {
				return err
			}
			var (
				q        *paidQuote
				cert     *identity.Certificate
				answered <-chan struct{}
				balance  func() (int64, bool)
			)
			if ps.terms != nil {
				if q, err = startQuote(cmd.Context(), ps, class, maxSpend, mi.Info.TotalLength()); err != nil {
					return err
				}
				cert, answered, balance = &q.cert, q.answered, q.knownBalance
			}
			up, down, err := pf.limits()
			if err != nil {
				return err
			}
			addrs, err := parsePeers(peers)
			if err != nil {
				return err
			}
			if len(addrs) == 0 && (pf.noTrackers || len(mi.Trackers()) == 0) {
				return usagef("no way to find peers: the torrent names no tracker; give --peer HOST:PORT")
			}
			dataPath, err := storage.DataPath(outDir, &mi.Info)
			if err != nil {
				return err
			}
			stderr := cmd.ErrOrStderr()
			bar := newProgressLine(os.Stderr)
			n, err := node.Start(cmd.Context(), node.Config{
				Torrent:       mi,
				DataPath:      dataPath,
				Listen:        pf.listen,
				Peers:         addrs,
				NoTrackers:    pf.noTrackers,
				UploadLimit:   up,
				DownloadLimit: down,
				Logger:        pf.logger(),
				Identity:      ps.key,
				Certificate:   cert,
				Class:         class,
				MaxSpend:      maxSpend,
				OpenGate:      answered,
				Balance:       balance,
				StatePath:     ps.state,
				OnTrackerError: func(url string, err error) {
					if bar.enabled {
						fmt.Fprintln(stderr)
					}
					fmt.Fprintf(stderr, "tracker %s: %v\n", url, err)
				},
			})
			if err != nil {
				return err
			}
			defer n.Close()
			if q != nil {
				// The balance was asked for before the node started, so
				// it is normally the balance before this download locked
				// anything.
				q.show(stderr)
			}
			t := n.Torrent()
			bar.money = func() string {
				if p := n.Payments(); p != nil {
					st := p.Stats()
					return fmt.Sprintf("  paid %d  earned %d", st.Spent, st.Earned+st.Pending)
				}
				return ""
			}
			start := time.Now()
			startLeft := t.Stats().Left
			tick := time.NewTicker(500 * time.Millisecond)
			defer tick.Stop()
			var deadline <-chan time.Time
			if timeout > 0 {
				deadline = time.After(timeout)
			}
			for {
				select {
				case <-t.Done():
					bar.show(t.Stats())
					if p := n.Payments(); p != nil {
						// Pay after verify: peers still downloading owe
						// for blocks of their unfinished pieces. Keep
						// serving a moment so they can finish and pay,
						// but not for a peer whose debt stopped shrinking
						// (it stalled, or keeps what it owes).
						waitForPayments(cmd.Context(), p, func() { bar.show(t.Stats()) })
					}
					bar.done()
					if err := n.Close(); err != nil {
						return fmt.Errorf("closing %s: %w", dataPath, err)
					}
					el := time.Since(start)
					fmt.Fprintf(cmd.OutOrStdout(), "downloaded %s to %s in %s (%s)\n",
						units.FormatBytes(startLeft), dataPath, el.Round(time.Millisecond),
						units.FormatRate(int64(float64(startLeft)/max(el.Seconds(), 1e-3))))
					if p := n.Payments(); p != nil {
						st := p.Stats()
						fmt.Fprintf(cmd.OutOrStdout(), "paid %d units to uploaders (%d locked in channels; the rest returns when they close or expire)\n", st.Spent, st.Locked)
						fmt.Fprintf(cmd.OutOrStdout(), "earned %d units by uploading to other peers (redeemed)\n", st.Earned)
					}
					return nil
				case <-tick.C:
					if err := n.StorageError(); err != nil {
						bar.done()
						return fmt.Errorf("writing %s: %w", dataPath, err)
					}
					bar.show(t.Stats())
				case <-deadline:
					bar.done()
					s := t.Stats()
					return fmt.Errorf("timed out after %s with %d of %d pieces", timeout, s.HavePieces, s.Pieces)
				case <-cmd.Context().Done():
					bar.done()
					s := t.Stats()
					return fmt.Errorf("interrupted with %d of %d pieces verified; run again to resume", s.HavePieces, s.Pieces)
				}
			}
		},
	}
	pf.register(cmd.Flags(), "0.0.0.0:0")
	f := cmd.Flags()
	f.StringArrayVar(&peers, "peer", nil, "connect to this peer, HOST:PORT (repeatable)")
	f.StringVar(&class, "class", "", "service class to buy (paid torrents)")
	f.StringVarP(&outDir, "out", "o", ".", "directory to download into")
	f.DurationVar(&timeout, "timeout", 0, "give up after this long (0 = never)")
	f.Int64Var(&maxSpend, "max-spend", 0, "refuse to lock or spend more than this many units (0 = no cap)")
	return cmd
}
