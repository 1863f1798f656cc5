package interop

import (
	"testing"

	"github.com/floodgate-p2p/floodgate/internal/metainfo"
)

// floodgateInfoHash returns the info hash Floodgate itself computes for a
// torrent, through the same metainfo package the CLI uses.
func floodgateInfoHash(t testing.TB, torrent string) string {
	t.Helper()
	mi, err := metainfo.Load(torrent)
	if err != nil {
		t.Fatalf("floodgate cannot load %s: %v", torrent, err)
	}
	return mi.InfoHash.String()
}
