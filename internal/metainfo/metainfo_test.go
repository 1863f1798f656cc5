package metainfo

import (
	"bytes"
	"crypto/sha1"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/floodgate-p2p/floodgate/internal/bencode"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := bencode.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// singleInfo is a valid single-file info dict: 40000 bytes in 3 pieces.
func singleInfo() map[string]any {
	return map[string]any{
		"name":         "file.bin",
		"piece length": int64(16384),
		"pieces":       strings.Repeat("A", 20) + strings.Repeat("B", 20) + strings.Repeat("C", 20),
		"length":       int64(40000),
	}
}

// multiInfo is a valid multi-file info dict: 3 + 0 + 32768 bytes in 3
// pieces of 16 KiB.
func multiInfo() map[string]any {
	return map[string]any{
		"name":         "root",
		"piece length": int64(16384),
		"pieces":       strings.Repeat("x", 60),
		"files": []any{
			map[string]any{"length": int64(3), "path": []any{"dir", "a"}},
			map[string]any{"length": int64(0), "path": []any{"b"}},
			map[string]any{"length": int64(32768), "path": []any{"dir", "c"}},
		},
	}
}

func torrent(info map[string]any, extra map[string]any) map[string]any {
	t := map[string]any{"announce": "http://tracker.example/announce", "info": info}
	maps.Copy(t, extra)
	return t
}

func TestParseGood(t *testing.T) {
	t.Run("single", func(t *testing.T) {
		data := mustMarshal(t, torrent(singleInfo(), map[string]any{
			"comment": "hi", "created by": "test", "creation date": int64(1700000000),
			"url-list": "http://seed.example/file.bin",
		}))
		m, err := Parse(data)
		if err != nil {
			t.Fatal(err)
		}
		i := &m.Info
		if i.Name != "file.bin" || i.IsMultiFile() || i.TotalLength() != 40000 || i.NumPieces() != 3 {
			t.Fatalf("info = %+v", i)
		}
		if i.PieceSize(0) != 16384 || i.PieceSize(2) != 40000-32768 || i.PieceSize(3) != 0 || i.PieceSize(-1) != 0 {
			t.Fatalf("piece sizes %d %d %d", i.PieceSize(0), i.PieceSize(2), i.PieceSize(3))
		}
		if i.Pieces[1] != Hash([]byte(strings.Repeat("B", 20))) {
			t.Fatalf("piece 1 = %x", i.Pieces[1])
		}
		if got := i.FileList(); !reflect.DeepEqual(got, []File{{Path: []string{"file.bin"}, Length: 40000}}) {
			t.Fatalf("FileList = %+v", got)
		}
		if !reflect.DeepEqual(m.URLList, []string{"http://seed.example/file.bin"}) || m.Comment != "hi" ||
			m.CreatedBy != "test" || m.CreationDate != 1700000000 || m.Floodgate != nil {
			t.Fatalf("meta = %+v", m)
		}
		if !reflect.DeepEqual(m.Trackers(), [][]string{{"http://tracker.example/announce"}}) {
			t.Fatalf("Trackers = %v", m.Trackers())
		}
	})
	t.Run("multi", func(t *testing.T) {
		data := mustMarshal(t, torrent(multiInfo(), map[string]any{
			"announce-list": []any{[]any{"http://a/x", ""}, []any{}, []any{"http://b/x", "http://c/x"}},
			"url-list":      []any{"http://w1/", "http://w2/"},
			"floodgate":     map[string]any{"broker": "http://broker/"},
		}))
		m, err := Parse(data)
		if err != nil {
			t.Fatal(err)
		}
		want := []File{{[]string{"dir", "a"}, 3}, {[]string{"b"}, 0}, {[]string{"dir", "c"}, 32768}}
		if !m.Info.IsMultiFile() || !reflect.DeepEqual(m.Info.Files, want) || !reflect.DeepEqual(m.Info.FileList(), want) {
			t.Fatalf("files = %+v", m.Info.Files)
		}
		if m.Info.TotalLength() != 32771 || m.Info.PieceSize(2) != 3 {
			t.Fatalf("total %d last %d", m.Info.TotalLength(), m.Info.PieceSize(2))
		}
		if got := m.Trackers(); !reflect.DeepEqual(got, [][]string{{"http://a/x"}, {"http://b/x", "http://c/x"}}) {
			t.Fatalf("Trackers = %v", got)
		}
		m.Trackers()[0][0] = "changed"
		if m.AnnounceList[0][0] != "http://a/x" {
			t.Fatal("Trackers shares memory with the MetaInfo")
		}
		if string(m.Floodgate) != "d6:broker14:http://broker/e" {
			t.Fatalf("floodgate = %q", m.Floodgate)
		}
		if !reflect.DeepEqual(m.URLList, []string{"http://w1/", "http://w2/"}) {
			t.Fatalf("url-list = %v", m.URLList)
		}
	})
	t.Run("private and non-power-of-two multiple of 16 KiB", func(t *testing.T) {
		info := singleInfo()
		info["private"] = int64(1)
		info["piece length"] = int64(3 * 16384)
		info["pieces"] = strings.Repeat("A", 20)
		m, err := Parse(mustMarshal(t, torrent(info, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if !m.Info.Private || m.Info.PieceLength != 49152 {
			t.Fatalf("info = %+v", m.Info)
		}
	})
}

func TestParseKeepsInfoBytesExact(t *testing.T) {
	// Unsorted info keys and an unknown key must survive untouched; the
	// hash is over these bytes, not a re-encoding.
	info := "d6:lengthi40000e4:name8:file.bin12:piece lengthi16384e6:pieces60:" +
		strings.Repeat("A", 60) + "1:zi1e1:a3:xyze"
	data := []byte("d8:announce3:x:y4:info" + info + "e")
	m, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if string(m.InfoBytes) != info {
		t.Fatalf("InfoBytes = %q", m.InfoBytes)
	}
	if m.InfoHash != sha1.Sum([]byte(info)) {
		t.Fatalf("InfoHash = %s", m.InfoHash)
	}
	enc, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	m2, err := Parse(enc)
	if err != nil {
		t.Fatal(err)
	}
	if m2.InfoHash != m.InfoHash || !bytes.Equal(m2.InfoBytes, m.InfoBytes) {
		t.Fatalf("Encode changed the info dictionary")
	}
}

func TestParseBad(t *testing.T) {
	with := func(base func() map[string]any, k string, v any) map[string]any {
		m := base()
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	files := func(fs ...any) map[string]any { return with(multiInfo, "files", fs) }
	file := func(length int64, path ...any) map[string]any {
		return map[string]any{"length": length, "path": path}
	}
	tests := []struct {
		name   string
		data   any // torrent map, or raw bytes as string
		want   string
		unsafe bool
	}{
		{"not bencode", "d8:announce", "unexpected end", false},
		{"trailing bytes", string(mustMarshal(t, torrent(singleInfo(), nil))) + "x", "trailing", false},
		{"not a dict", "li1ee", "cannot decode list", false},
		{"no info", map[string]any{"announce": "x"}, "no info dictionary", false},
		{"info not dict", map[string]any{"info": "x"}, "info is not a dictionary", false},
		{"no name", torrent(with(singleInfo, "name", nil), nil), "no name", false},
		{"no piece length", torrent(with(singleInfo, "piece length", nil), nil), "no piece length", false},
		{"no pieces", torrent(with(singleInfo, "pieces", nil), nil), "no pieces", false},
		{"v2 only", torrent(with(func() map[string]any { return with(singleInfo, "pieces", nil) }, "meta version", int64(2)), nil), "v2-only", false},
		{"no length or files", torrent(with(singleInfo, "length", nil), nil), "neither length nor files", false},
		{"length and files", torrent(with(multiInfo, "length", int64(5)), nil), "both length and files", false},
		{"pieces not multiple of 20", torrent(with(singleInfo, "pieces", strings.Repeat("A", 59)), nil), "not a multiple of 20", false},
		{"too few pieces", torrent(with(singleInfo, "pieces", strings.Repeat("A", 40)), nil), "2 piece hashes", false},
		{"too many pieces", torrent(with(singleInfo, "pieces", strings.Repeat("A", 80)), nil), "4 piece hashes", false},
		{"piece length zero", torrent(with(singleInfo, "piece length", int64(0)), nil), "piece length 0", false},
		{"piece length negative", torrent(with(singleInfo, "piece length", int64(-16384)), nil), "piece length -16384", false},
		{"piece length small", torrent(with(singleInfo, "piece length", int64(8192)), nil), "piece length 8192", false},
		{"piece length odd", torrent(with(singleInfo, "piece length", int64(20000)), nil), "piece length 20000", false},
		{"piece length huge", torrent(with(singleInfo, "piece length", int64(128<<20)), nil), "piece length", false},
		{"negative length", torrent(with(singleInfo, "length", int64(-1)), nil), "negative length", false},
		{"zero length", torrent(with(func() map[string]any { return with(singleInfo, "length", int64(0)) }, "pieces", ""), nil), "no content", false},
		{"length wrong type", torrent(with(singleInfo, "length", "5"), nil), "cannot decode string into int64", false},
		{"private not 0/1", torrent(with(singleInfo, "private", int64(2)), nil), "integer 2", false},
		{"empty files", torrent(files(), nil), "files list is empty", false},
		{"file negative length", torrent(files(file(-1, "a")), nil), "negative length", false},
		{"file without path", torrent(files(map[string]any{"length": int64(1)}), nil), "has no path", false},
		{"file without length", torrent(files(map[string]any{"path": []any{"a"}}), nil), "has no length", false},
		{"file empty path", torrent(files(file(1)), nil), "empty path", false},
		{"total overflows", torrent(files(file(1<<62, "a"), file(1<<62, "b"), file(1<<62, "c")), nil), "overflows", false},
		{"duplicate file", torrent(files(file(1, "a"), file(1, "a")), nil), "duplicate path", false},
		{"file is also dir", torrent(files(file(1, "a"), file(1, "a", "b")), nil), "is also a file", false},
		{"dir is also file", torrent(files(file(1, "a", "b"), file(1, "a")), nil), "also a directory", false},
		{"dotdot component", torrent(files(file(1, "..", "etc")), nil), `".."`, true},
		{"dot component", torrent(files(file(1, "a", ".")), nil), `"."`, true},
		{"empty component", torrent(files(file(1, "a", "")), nil), "empty name", true},
		{"slash component", torrent(files(file(1, "a/../../b")), nil), "contains", true},
		{"backslash component", torrent(files(file(1, `..\b`)), nil), "contains", true},
		{"nul component", torrent(files(file(1, "a\x00b")), nil), "contains", true},
		{"name dotdot", torrent(with(singleInfo, "name", ".."), nil), `".."`, true},
		{"name empty", torrent(with(singleInfo, "name", ""), nil), "empty name", true},
		{"name with slash", torrent(with(singleInfo, "name", "/etc/passwd"), nil), "contains", true},
		{"url-list wrong type", torrent(singleInfo(), map[string]any{"url-list": int64(1)}), "url-list", false},
		{"floodgate not dict", torrent(singleInfo(), map[string]any{"floodgate": "x"}), "floodgate terms", false},
		{"duplicate key", "d4:infod4:name1:a4:name1:bee", "duplicate", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var data []byte
			if s, ok := tt.data.(string); ok {
				data = []byte(s)
			} else {
				data = mustMarshal(t, tt.data)
			}
			m, err := Parse(data)
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", m.Info)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if errors.Is(err, ErrUnsafePath) != tt.unsafe {
				t.Errorf("errors.Is(%v, ErrUnsafePath) = %v, want %v", err, !tt.unsafe, tt.unsafe)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestHash(t *testing.T) {
	h, err := ParseHash("0123456789ABCDEFabcdef0123456789abcdef01")
	if err != nil {
		t.Fatal(err)
	}
	if h.String() != "0123456789abcdefabcdef0123456789abcdef01" {
		t.Fatalf("String = %s", h)
	}
	for _, bad := range []string{"", "0123", "0123456789abcdefabcdef0123456789abcdef0g", "0123456789abcdefabcdef0123456789abcdef011"} {
		if _, err := ParseHash(bad); err == nil {
			t.Errorf("ParseHash(%q) succeeded", bad)
		}
	}
	var back Hash
	text, _ := h.MarshalText()
	if err := back.UnmarshalText(text); err != nil || back != h {
		t.Fatalf("text round trip: %v %s", err, back)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.torrent")
	data := mustMarshal(t, torrent(singleInfo(), nil))
	if err := os.WriteFile(good, data, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Load(good)
	if err != nil || m.Info.Name != "file.bin" {
		t.Fatalf("Load = %v, %v", m, err)
	}
	big := filepath.Join(dir, "big.torrent")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxTorrentSize + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := Load(big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Load(big) = %v, want ErrTooLarge", err)
	}
	if _, err := Load(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load(missing) = %v", err)
	}
	bad := filepath.Join(dir, "bad.torrent")
	if err := os.WriteFile(bad, []byte("de"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), bad) {
		t.Fatalf("Load(bad) = %v", err)
	}
}

func TestEncodeWithoutInfoBytes(t *testing.T) {
	m, err := Parse(mustMarshal(t, torrent(multiInfo(), map[string]any{"url-list": "http://w/"})))
	if err != nil {
		t.Fatal(err)
	}
	// A MetaInfo assembled by hand has no InfoBytes; Encode derives them
	// from Info, canonically, which here equals the sorted input.
	m2 := *m
	m2.InfoBytes = nil
	enc, err := m2.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(enc)
	if err != nil {
		t.Fatal(err)
	}
	if back.InfoHash != m.InfoHash || !reflect.DeepEqual(back.Info, m.Info) || !reflect.DeepEqual(back.URLList, m.URLList) {
		t.Fatalf("round trip changed the torrent")
	}
}

// BenchmarkParseLargeTorrent parses a torrent of about 2 MB: 100,000 piece
// hashes and 2,000 files.
func BenchmarkParseLargeTorrent(b *testing.B) {
	var files []any
	var total int64
	for i := range 2000 {
		length := int64(1<<20 + i)
		total += length
		files = append(files, map[string]any{"length": length, "path": []any{"dir", "file-" + strconv.Itoa(i)}})
	}
	pl := int64(32 << 10)
	n := (total + pl - 1) / pl
	info := map[string]any{"name": "big", "piece length": pl, "pieces": strings.Repeat("h", int(n)*20), "files": files}
	data := mustMarshal(b, torrent(info, nil))
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}
