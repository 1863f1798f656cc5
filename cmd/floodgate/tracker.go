package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/floodgate-p2p/floodgate/internal/tracker"
)

func newTrackerCmd() *cobra.Command {
	var (
		listen   string
		interval time.Duration
	)
	cmd := &cobra.Command{
		Use:   "tracker [--listen HOST:PORT]",
		Short: "Run a standalone HTTP BitTorrent tracker",
		Long: `Run an HTTP tracker (BEP 3, compact peers per BEP 23, scrape) until
interrupted. Its announce URL is http://HOST:PORT/announce.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			srv := tracker.NewServer(tracker.ServerConfig{Interval: interval})
			defer srv.Close()
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", listen, err)
			}
			hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
			fmt.Fprintf(cmd.OutOrStdout(), "tracker listening; announce URL http://%s/announce\n", ln.Addr())
			errc := make(chan error, 1)
			go func() { errc <- hs.Serve(ln) }()
			select {
			case err := <-errc:
				return err
			case <-cmd.Context().Done():
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := hs.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "0.0.0.0:6969", "address to serve HTTP on")
	cmd.Flags().DurationVar(&interval, "interval", 30*time.Second, "re-announce interval told to clients")
	return cmd
}
