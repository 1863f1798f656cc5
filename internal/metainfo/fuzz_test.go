package metainfo

import (
	"bytes"
	"reflect"
	"testing"
)

// FuzzParse checks that no input panics Parse, and that whatever it accepts
// is valid, re-encodes, and parses back to the same torrent and info hash.
// The committed corpus holds torrents made by mktorrent and by Build.
func FuzzParse(f *testing.F) {
	f.Add([]byte("d8:announce3:x:y4:infod6:lengthi1e4:name1:a12:piece lengthi16384e6:pieces20:AAAAAAAAAAAAAAAAAAAAee"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			return
		}
		if err := m.Info.Validate(); err != nil {
			t.Fatalf("Parse accepted an invalid info: %v", err)
		}
		if int64(m.Info.NumPieces()) != (m.Info.TotalLength()+m.Info.PieceLength-1)/m.Info.PieceLength {
			t.Fatal("piece count does not match the length")
		}
		for i, f := range m.Info.FileList() {
			if len(f.Path) == 0 || f.Length < 0 {
				t.Fatalf("file %d: %+v", i, f)
			}
		}
		enc, err := m.Encode()
		if err != nil {
			t.Fatalf("Encode: %v", err)
		}
		back, err := Parse(enc)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if back.InfoHash != m.InfoHash || !bytes.Equal(back.InfoBytes, m.InfoBytes) {
			t.Fatal("info hash changed across Encode")
		}
		if !reflect.DeepEqual(back.Info, m.Info) || !reflect.DeepEqual(back.Trackers(), m.Trackers()) ||
			!bytes.Equal(back.Floodgate, m.Floodgate) {
			t.Fatal("torrent changed across Encode")
		}
	})
}
