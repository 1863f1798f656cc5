package interop

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// explainInfoDiff logs how two info dictionaries differ, key by key, so
// that an info-hash mismatch says what to fix instead of just "differs".
func explainInfoDiff(t testing.TB, gotPath, wantPath string) {
	t.Helper()
	got, err := infoDict(gotPath)
	if err != nil {
		t.Logf("cannot decode %s: %v", gotPath, err)
		return
	}
	want, err := infoDict(wantPath)
	if err != nil {
		t.Logf("cannot decode %s: %v", wantPath, err)
		return
	}
	keys := map[string]bool{}
	for k := range got {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		g, gok := got[k]
		w, wok := want[k]
		switch {
		case !gok:
			t.Logf("info[%q]: missing in floodgate's, mktorrent has %s", k, brief(w))
		case !wok:
			t.Logf("info[%q]: extra in floodgate's (%s), absent from mktorrent's", k, brief(g))
		case brief(g) != brief(w):
			t.Logf("info[%q]: floodgate %s, mktorrent %s", k, brief(g), brief(w))
		}
	}
}

// brief renders a decoded bencode value compactly; long strings (the piece
// hashes) are shortened to their length and a prefix.
func brief(v any) string {
	switch x := v.(type) {
	case string:
		if len(x) > 48 {
			return fmt.Sprintf("<%d bytes %x...>", len(x), x[:8])
		}
		return strconv.Quote(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = brief(e)
		}
		return "[" + strings.Join(parts, " ") + "]"
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + ":" + brief(x[k])
		}
		return "{" + strings.Join(parts, " ") + "}"
	default:
		return fmt.Sprint(x)
	}
}

var pieceCountRe = regexp.MustCompile(`(?m)^\s*Piece Count:\s*(\d+)\s*$`)

// checkTransmissionListing checks what transmission-show printed about a
// torrent made from content with 64 KiB pieces: the piece count and every
// file's path.
func checkTransmissionListing(t testing.TB, out, content string) {
	t.Helper()
	var total int64
	var paths []string
	base := filepath.Base(content)
	err := filepath.WalkDir(content, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		total += fileSize(t, p)
		rel, _ := filepath.Rel(filepath.Dir(content), p)
		paths = append(paths, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	m := pieceCountRe.FindStringSubmatch(out)
	if m == nil {
		t.Errorf("transmission-show printed no piece count:\n%s", out)
	} else if want := (total + 64*kib - 1) / (64 * kib); m[1] != strconv.FormatInt(want, 10) {
		t.Errorf("transmission-show piece count %s, want %d", m[1], want)
	}
	if !strings.Contains(out, "Name: "+base) {
		t.Errorf("transmission-show does not show the name %q:\n%s", base, out)
	}
	files := out[strings.LastIndex(out, "FILES"):]
	for _, p := range paths {
		if !regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(p) + ` \(`).MatchString(files) {
			t.Errorf("transmission-show does not list file %q:\n%s", p, files)
		}
	}
}
