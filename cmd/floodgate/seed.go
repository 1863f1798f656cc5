package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/floodgate-p2p/floodgate/internal/node"
	"github.com/floodgate-p2p/floodgate/internal/units"
)

func newSeedCmd() *cobra.Command {
	var (
		pf    peerFlags
		free  bool
		peers []string
	)
	cmd := &cobra.Command{
		Use:   "seed [--listen HOST:PORT] [--free] TORRENT DATAPATH",
		Short: "Serve a torrent's complete content to other peers",
		Long: `Serve the content of TORRENT from DATAPATH until interrupted (Ctrl-C).

DATAPATH is the file of a single-file torrent, or the NAME directory of a
multi-file one. Every piece is verified on start; data that does not match
the torrent is refused with a message saying how much is wrong.

--free serves any peer, including plain BitTorrent clients, without payment.`,
		Args: exactArgs(2, "TORRENT and DATAPATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			mi, err := loadTorrent(args[0])
			if err != nil {
				return err
			}
			up, down, err := pf.limits()
			if err != nil {
				return err
			}
			addrs, err := parsePeers(peers)
			if err != nil {
				return err
			}
			ps, err := pf.setupPaid(mi, "seed")
			if err != nil {
				return err
			}
			errOut := cmd.ErrOrStderr()
			n, err := node.Start(cmd.Context(), node.Config{
				Torrent:       mi,
				DataPath:      args[1],
				Seed:          true,
				Free:          free,
				Listen:        pf.listen,
				Peers:         addrs,
				NoTrackers:    pf.noTrackers,
				UploadLimit:   up,
				DownloadLimit: down,
				Logger:        pf.logger(),
				Identity:      ps.key,
				Certificate:   ps.savedCertificate(),
				StatePath:     ps.state,
				OnTrackerError: func(url string, err error) {
					fmt.Fprintf(errOut, "tracker %s: %v\n", url, err)
				},
			})
			if err != nil {
				return err
			}
			defer n.Close()
			fmt.Fprintf(cmd.OutOrStdout(), "seeding %s (%s, info hash %s) on %s\n",
				mi.Info.Name, units.FormatBytes(mi.Info.TotalLength()), mi.InfoHash, n.Addr())
			if p := n.Payments(); p != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "paid torrent: earning as account %s via %s\n", p.Account(), n.Terms().Broker)
			}
			bar := newProgressLine(os.Stderr)
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
		wait:
			for {
				select {
				case <-cmd.Context().Done():
					break wait
				case <-tick.C:
					bar.showSeed(n.Torrent().Stats(), n.Payments())
				}
			}
			bar.done()
			s := n.Torrent().Stats()
			if err := n.Close(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "stopped; uploaded %s", units.FormatBytes(s.Uploaded))
			if p := n.Payments(); p != nil {
				ps := p.Stats()
				fmt.Fprintf(cmd.OutOrStdout(), "; earned %d units (redeemed)", ps.Earned)
			}
			fmt.Fprintln(cmd.OutOrStdout())
			return nil
		},
	}
	pf.register(cmd.Flags(), "0.0.0.0:6881")
	cmd.Flags().BoolVar(&free, "free", false, "serve any peer without payment (plain BitTorrent clients too)")
	cmd.Flags().StringArrayVar(&peers, "peer", nil, "also connect to this peer, HOST:PORT (repeatable)")
	return cmd
}
