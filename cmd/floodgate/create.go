package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/floodgate-p2p/floodgate/internal/identity"
	"github.com/floodgate-p2p/floodgate/internal/metainfo"
	"github.com/floodgate-p2p/floodgate/internal/terms"
	"github.com/floodgate-p2p/floodgate/internal/units"
)

func newCreateCmd() *cobra.Command {
	var (
		pieceLength string
		trackers    []string
		webseeds    []string
		out         string
		comment     string
		private     bool
		providerKey string
		brokerURL   string
		classes     []string
		defClass    string
	)
	cmd := &cobra.Command{
		Use:   "create [--piece-length BYTES] [--tracker URL]... [--webseed URL]... -o OUT.torrent PATH",
		Short: "Make a .torrent file for a file or a directory",
		Long: `Make a .torrent file (BEP 3) for PATH, a file or a directory.

The info hash is the same as mktorrent's for the same content and piece
length. Without --piece-length the piece length is chosen for about
1000-2000 pieces. Several --tracker flags make an announce-list with one
tracker per tier; --webseed adds BEP 19 web seeds (url-list).

With --provider-key the torrent is a paid Floodgate torrent: the provider
signs terms (its key, the --broker URL and the --class service classes)
into a "floodgate" dictionary outside the info dictionary, so the info hash
and plain BitTorrent clients are unaffected. A class is
NAME:MIN_RATE:PRICE_PER_MIB[:stream[:STARTUP]], e.g. gold:2MiB/s:30.`,
		Args: exactArgs(1, "exactly one PATH to make a torrent of"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usagef("missing -o OUT.torrent\nRun 'floodgate create --help' for usage.")
			}
			opts := metainfo.BuildOptions{
				WebSeeds:     webseeds,
				Comment:      comment,
				CreatedBy:    "Floodgate",
				CreationDate: time.Now().Unix(),
				Private:      private,
			}
			if pieceLength != "" {
				n, err := units.ParseSize(pieceLength)
				if err != nil {
					return usagef("--piece-length: %v", err)
				}
				opts.PieceLength = n
			}
			if len(trackers) > 0 {
				opts.Announce = trackers[0]
				if len(trackers) > 1 {
					for _, tr := range trackers {
						opts.AnnounceList = append(opts.AnnounceList, []string{tr})
					}
				}
			}
			var tm *terms.Terms
			if providerKey != "" {
				var err error
				if tm, err = buildTerms(providerKey, brokerURL, classes, defClass); err != nil {
					return err
				}
			} else if len(classes) > 0 || brokerURL != "" {
				return usagef("--class and --broker need --provider-key (they make a paid torrent)")
			}
			mi, err := metainfo.Build(cmd.Context(), args[0], opts)
			if err != nil {
				return err
			}
			if tm != nil {
				key, err := identity.ReadKeyFile(providerKey)
				if err != nil {
					return err
				}
				signed, err := terms.Sign(*tm, mi.InfoHash, key)
				if err != nil {
					return err
				}
				if err := terms.Attach(mi, &signed); err != nil {
					return err
				}
			}
			data, err := mi.Encode()
			if err != nil {
				return err
			}
			if err := writeFileAtomic(out, data); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created %s\n  name:       %s\n  size:       %s in %d pieces of %s\n  info hash:  %s\n",
				out, mi.Info.Name, units.FormatBytes(mi.Info.TotalLength()), mi.Info.NumPieces(),
				units.FormatBytes(mi.Info.PieceLength), mi.InfoHash)
			if tm != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "  paid:       broker %s, classes", tm.Broker)
				for _, c := range tm.Classes {
					fmt.Fprintf(cmd.OutOrStdout(), " %s", c)
				}
				fmt.Fprintln(cmd.OutOrStdout())
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&pieceLength, "piece-length", "", "piece length in bytes (a power of two, e.g. 262144 or 256KiB); default: automatic")
	f.StringArrayVar(&trackers, "tracker", nil, "tracker announce URL (repeatable)")
	f.StringArrayVar(&webseeds, "webseed", nil, "web seed URL, BEP 19 (repeatable)")
	f.StringVarP(&out, "output", "o", "", "where to write the .torrent file (required)")
	f.StringVar(&comment, "comment", "", "comment stored in the torrent")
	f.BoolVar(&private, "private", false, "set the private flag (no DHT or peer exchange)")
	f.StringVar(&providerKey, "provider-key", "", "sign Floodgate terms with this provider key (makes a paid torrent)")
	f.StringVar(&brokerURL, "broker", "", "the provider's broker URL for the terms (default "+defaultBrokerURL+")")
	f.StringArrayVar(&classes, "class", nil, "service class NAME:MIN_RATE:PRICE_PER_MIB[:stream[:STARTUP]] (repeatable; default bronze:0:10)")
	f.StringVar(&defClass, "default-class", "", "class for buyers who name none (default: the first)")
	return cmd
}

// buildTerms assembles unsigned terms from the command-line flags.
func buildTerms(keyPath, brokerURL string, specs []string, def string) (*terms.Terms, error) {
	if brokerURL == "" {
		brokerURL = defaultBrokerURL
	}
	if len(specs) == 0 {
		specs = []string{"bronze:0:10"}
	}
	tm := &terms.Terms{Broker: brokerURL}
	for _, spec := range specs {
		c, err := terms.ParseClass(spec)
		if err != nil {
			return nil, usagef("--class %q: %v", spec, err)
		}
		tm.Classes = append(tm.Classes, c)
	}
	tm.Default = def
	if tm.Default == "" {
		tm.Default = tm.Classes[0].Name
	}
	if _, err := os.Stat(keyPath); err != nil {
		return nil, fmt.Errorf("--provider-key: %w", err)
	}
	return tm, nil
}

// writeFileAtomic writes data to path via a temporary file and a rename, so
// an interrupted write never leaves a half-written torrent behind.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
