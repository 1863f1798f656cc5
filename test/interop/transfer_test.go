package interop

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// trackerKinds are the trackers every tracker-mediated transfer is run
// through: an independent implementation and Floodgate's own.
var trackerKinds = []string{"opentracker", "floodgate"}

// singleFileSize is just over 6 MiB, so the last 256 KiB piece is short.
const singleFileSize = 6*mib + 333

// TestAria2LeechesFromFloodgateSeed checks that a stock BitTorrent client
// can download from `floodgate seed --free`, finding it through a tracker.
func TestAria2LeechesFromFloodgateSeed(t *testing.T) {
	needTool(t, "aria2c")
	for _, kind := range trackerKinds {
		t.Run(kind, func(t *testing.T) {
			src := t.TempDir()
			content := filepath.Join(src, "payload.bin")
			writeRandomFile(t, content, singleFileSize, 1)
			torrent := filepath.Join(src, "payload.torrent")

			tr, _ := newTracker(t, kind, func(announce string) string {
				floodgateCreate(t, content, torrent, 256*kib, announce)
				return torrent
			})
			_, seed := startFloodgateSeed(t, torrent, content)
			waitSeeder(t, tr.announce, mustOracleHash(t, torrent), seed, startTimeout)

			out := t.TempDir()
			aria2Leech(t, torrent, out)
			assertSameContent(t, content, filepath.Join(out, "payload.bin"))
		})
	}
}

// TestFloodgateGetsFromAria2Seeder checks that `floodgate get` downloads
// from a stock client: through each tracker, and with the seeder given
// directly by --peer on a torrent that names no tracker at all.
func TestFloodgateGetsFromAria2Seeder(t *testing.T) {
	needTool(t, "aria2c")
	for _, kind := range append(trackerKinds, "direct-peer") {
		t.Run(kind, func(t *testing.T) {
			seedDir := t.TempDir()
			content := filepath.Join(seedDir, "payload.bin")
			writeRandomFile(t, content, singleFileSize, 2)
			torrent := filepath.Join(t.TempDir(), "payload.torrent")

			var peers []string
			if kind == "direct-peer" {
				floodgateCreate(t, content, torrent, 256*kib, "")
				addr, _ := startAria2Seeder(t, torrent, seedDir)
				peers = append(peers, addr)
			} else {
				tr, _ := newTracker(t, kind, func(announce string) string {
					floodgateCreate(t, content, torrent, 256*kib, announce)
					return torrent
				})
				_, seed := startAria2Seeder(t, torrent, seedDir)
				waitSeeder(t, tr.announce, mustOracleHash(t, torrent), seed, startTimeout)
			}

			out := t.TempDir()
			floodgateGet(t, torrent, out, peers...)
			assertSameContent(t, content, filepath.Join(out, "payload.bin"))
		})
	}
}

// TestFloodgateDownloadsMktorrentTorrent checks that torrents written by
// mktorrent, single- and multi-file, are seeded and downloaded by
// Floodgate through its tracker.
func TestFloodgateDownloadsMktorrentTorrent(t *testing.T) {
	mktorrent := needTool(t, "mktorrent")
	for _, multi := range []bool{false, true} {
		name := "single-file"
		if multi {
			name = "multi-file"
		}
		t.Run(name, func(t *testing.T) {
			src := t.TempDir()
			var content string
			if multi {
				content = writeMultiFileTree(t, src, "tree")
			} else {
				content = filepath.Join(src, "payload.bin")
				writeRandomFile(t, content, singleFileSize, 3)
			}
			torrent := filepath.Join(t.TempDir(), "mk.torrent")
			tr, _ := newTracker(t, "floodgate", func(announce string) string {
				// 2^16 = 64 KiB pieces: a different size from the other tests.
				mustRun(t, startTimeout, "", mktorrent, "-d", "-l", "16", "-a", announce, "-o", torrent, content)
				return torrent
			})
			_, seed := startFloodgateSeed(t, torrent, content)
			waitSeeder(t, tr.announce, mustOracleHash(t, torrent), seed, startTimeout)

			out := t.TempDir()
			floodgateGet(t, torrent, out)
			assertSameContent(t, content, filepath.Join(out, filepath.Base(content)))
		})
	}
}

// TestCreateMatchesMktorrent checks that `floodgate create` and mktorrent
// build the same info dictionary, byte for byte, from the same content
// with the same piece length: same file order, same keys, same hashes.
func TestCreateMatchesMktorrent(t *testing.T) {
	mktorrent := needTool(t, "mktorrent")
	src := t.TempDir()
	single := filepath.Join(src, "payload.bin")
	writeRandomFile(t, single, 3*mib+17, 4)
	multi := writeMultiFileTree(t, src, "tree")
	// An exact multiple of the piece length: no short last piece.
	exact := filepath.Join(src, "exact.bin")
	writeRandomFile(t, exact, 2*mib, 5)
	// Names whose order differs between sorting whole paths bytewise and
	// sorting component by component ('-' < '.' < '/'), a hidden file,
	// upper case before lower case, and an empty file.
	edge := filepath.Join(src, "edge")
	for i, f := range []struct {
		path string
		size int64
	}{
		{".hidden", 3000}, {"B_upper", 3000}, {"a", 100000}, {"empty", 0},
		{"sub-x", 2000}, {"sub.txt", 2000}, {"sub/b", 5000},
	} {
		writeRandomFile(t, filepath.Join(edge, filepath.FromSlash(f.path)), f.size, uint64(200+i))
	}

	cases := []struct {
		name    string
		content string
		log2    int
	}{
		{"single-file/256KiB", single, 18},
		{"single-file/32KiB", single, 15},
		{"single-file/exact-multiple", exact, 18},
		{"multi-file/256KiB", multi, 18},
		{"multi-file/32KiB", multi, 15},
		{"multi-file/edge-names", edge, 15},
	}
	const announce = "http://127.0.0.1:6969/announce"
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			mk := filepath.Join(dir, "mktorrent.torrent")
			fg := filepath.Join(dir, "floodgate.torrent")
			mustRun(t, startTimeout, "", mktorrent, "-d", "-l", strconv.Itoa(c.log2), "-a", announce, "-o", mk, c.content)
			floodgateCreate(t, c.content, fg, 1<<c.log2, announce)

			mkHash, fgHash := mustOracleHash(t, mk), mustOracleHash(t, fg)
			if mkHash != fgHash {
				t.Errorf("info hash: floodgate create %s, mktorrent %s", fgHash, mkHash)
				explainInfoDiff(t, fg, mk)
			}
		})
	}
}

// TestTransmissionShowReadsCreate checks that transmission-show accepts a
// torrent written by `floodgate create` and computes the same info hash as
// Floodgate does.
func TestTransmissionShowReadsCreate(t *testing.T) {
	needTool(t, "transmission-show")
	src := t.TempDir()
	single := filepath.Join(src, "payload.bin")
	writeRandomFile(t, single, 3*mib+17, 6)
	multi := writeMultiFileTree(t, src, "tree")

	for _, content := range []string{single, multi} {
		t.Run(filepath.Base(content), func(t *testing.T) {
			torrent := filepath.Join(t.TempDir(), "x.torrent")
			floodgateCreate(t, content, torrent, 64*kib, "http://127.0.0.1:6969/announce")
			out, tsHash := transmissionShow(t, torrent)

			if want := floodgateInfoHash(t, torrent); tsHash != want {
				t.Errorf("transmission-show info hash %s, floodgate computes %s\n%s", tsHash, want, out)
			}
			if oracle := mustOracleHash(t, torrent); tsHash != oracle {
				t.Errorf("transmission-show info hash %s, SHA-1 of the raw info dictionary %s", tsHash, oracle)
			}
			checkTransmissionListing(t, out, content)
		})
	}
}

// fileSize returns a file's size or fails the test.
func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestMultiFileWithAria2 moves a multi-file torrent, whose files straddle
// piece boundaries, between Floodgate and aria2c in both directions, so the
// mapping of pieces onto files is checked against an independent client.
func TestMultiFileWithAria2(t *testing.T) {
	needTool(t, "aria2c")
	t.Run("aria2c-seeds-mktorrent-torrent", func(t *testing.T) {
		mktorrent := needTool(t, "mktorrent")
		src := t.TempDir()
		content := writeMultiFileTree(t, src, "tree")
		torrent := filepath.Join(t.TempDir(), "tree.torrent")
		tr, _ := newTracker(t, "floodgate", func(announce string) string {
			mustRun(t, startTimeout, "", mktorrent, "-d", "-l", "15", "-a", announce, "-o", torrent, content)
			return torrent
		})
		_, seed := startAria2Seeder(t, torrent, src)
		waitSeeder(t, tr.announce, mustOracleHash(t, torrent), seed, startTimeout)

		out := t.TempDir()
		floodgateGet(t, torrent, out)
		assertSameContent(t, content, filepath.Join(out, "tree"))
	})
	t.Run("aria2c-leeches-from-floodgate", func(t *testing.T) {
		src := t.TempDir()
		content := writeMultiFileTree(t, src, "tree")
		torrent := filepath.Join(t.TempDir(), "tree.torrent")
		tr, _ := newTracker(t, "floodgate", func(announce string) string {
			floodgateCreate(t, content, torrent, 32*kib, announce)
			return torrent
		})
		_, seed := startFloodgateSeed(t, torrent, content)
		waitSeeder(t, tr.announce, mustOracleHash(t, torrent), seed, startTimeout)

		out := t.TempDir()
		aria2Leech(t, torrent, out)
		assertSameContent(t, content, filepath.Join(out, "tree"))
	})
}
