package wire

import (
	"bytes"
	"errors"
	"maps"
	"net/netip"
	"strings"
	"testing"

	"github.com/floodgate-p2p/floodgate/internal/bencode"
)

// Handshakes captured from real clients seeding a 100 kB torrent over
// loopback (aria2c 1.36.0 and transmission-cli 3.00 from Debian), and one
// shaped like libtorrent's (qBittorrent), which sends a negative
// complete_ago and yourip.
const (
	aria2Handshake        = "d1:md11:ut_metadatai9e6:ut_pexi8ee13:metadata_sizei147e1:pi51413e1:v12:aria2/1.36.0e"
	transmissionHandshake = "d1:ei1e1:md11:ut_metadatai3e6:ut_pexi1ee13:metadata_sizei147e1:pi51414e4:reqqi512e11:upload_onlyi1e1:v17:Transmission 3.00e"
	libtorrentHandshake   = "d12:complete_agoi-1e1:md11:lt_donthavei7e10:share_modei8e11:upload_onlyi3e12:ut_holepunchi4e11:ut_metadatai2e6:ut_pexi1ee13:metadata_sizei31235e4:reqqi500e11:upload_onlyi0e1:v19:qBittorrent/4.5.2.06:yourip4:\x7f\x00\x00\x01e"
)

func TestParseRealHandshakes(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want ExtendedHandshake
	}{
		{"aria2", aria2Handshake, ExtendedHandshake{
			M: map[string]uint8{"ut_metadata": 9, "ut_pex": 8},
			V: "aria2/1.36.0", P: 51413, MetadataSize: 147,
		}},
		{"transmission", transmissionHandshake, ExtendedHandshake{
			M: map[string]uint8{"ut_metadata": 3, "ut_pex": 1},
			V: "Transmission 3.00", P: 51414, Reqq: 512, MetadataSize: 147, UploadOnly: true,
			Extra: map[string]bencode.RawMessage{"e": bencode.RawMessage("i1e")},
		}},
		{"libtorrent", libtorrentHandshake, ExtendedHandshake{
			M: map[string]uint8{"lt_donthave": 7, "share_mode": 8, "upload_only": 3, "ut_holepunch": 4, "ut_metadata": 2, "ut_pex": 1},
			V: "qBittorrent/4.5.2.0", Reqq: 500, MetadataSize: 31235,
			YourIP: netip.MustParseAddr("127.0.0.1"),
			Extra:  map[string]bencode.RawMessage{"complete_ago": bencode.RawMessage("i-1e")},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseExtendedHandshake([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !equalHandshake(&got, &tt.want) {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
			if id, ok := got.ID("ut_metadata"); !ok || id != tt.want.M["ut_metadata"] {
				t.Errorf("ID(ut_metadata) = %d, %v", id, ok)
			}
			if _, ok := got.ID("fg_pay"); ok {
				t.Error("plain clients do not speak fg_pay")
			}
			// Re-encoding reproduces what the client sent whenever its
			// keys were sorted and fields canonical (aria2, Transmission).
			if tt.name != "libtorrent" {
				b, err := got.AppendBinary(nil)
				if err != nil {
					t.Fatal(err)
				}
				if string(b) != tt.in {
					t.Errorf("re-encoded\n%s\nwant\n%s", b, tt.in)
				}
			}
		})
	}
}

func equalHandshake(a, b *ExtendedHandshake) bool {
	return a.V == b.V && a.P == b.P && a.Reqq == b.Reqq && a.MetadataSize == b.MetadataSize &&
		a.UploadOnly == b.UploadOnly && a.YourIP == b.YourIP && a.IPv4 == b.IPv4 && a.IPv6 == b.IPv6 &&
		maps.Equal(a.M, b.M) &&
		maps.EqualFunc(a.Extra, b.Extra, func(x, y bencode.RawMessage) bool { return bytes.Equal(x, y) })
}

func TestExtendedHandshakeRoundTrip(t *testing.T) {
	h := ExtendedHandshake{
		M:            map[string]uint8{"fg_pay": 1, "ut_metadata": 2, "off": 0},
		V:            "floodgate/0.1",
		P:            6881,
		Reqq:         1024,
		YourIP:       netip.MustParseAddr("2001:db8::1"),
		IPv4:         netip.MustParseAddr("192.0.2.7"),
		IPv6:         netip.MustParseAddr("2001:db8::7"),
		MetadataSize: 1 << 20,
		UploadOnly:   true,
		Extra:        map[string]bencode.RawMessage{"fg": bencode.RawMessage("d5:nonce4:abcde")},
	}
	m, err := h.Message()
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != Extended || m.ExtendedID != ExtendedHandshakeID {
		t.Fatalf("framed as %v", m)
	}
	wire, _ := m.AppendBinary(nil)
	read, err := NewReader(bytes.NewReader(wire), Limits{}).ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseExtendedHandshake(read.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if !equalHandshake(&got, &h) {
		t.Fatalf("got %+v\nwant %+v", got, h)
	}
	if _, ok := got.ID("off"); ok {
		t.Error("ID 0 disables an extension")
	}
	// An IPv4-mapped address goes out as the 4-byte form.
	v4m := ExtendedHandshake{YourIP: netip.MustParseAddr("::ffff:10.0.0.1")}
	b, _ := v4m.AppendBinary(nil)
	if !strings.Contains(string(b), "6:yourip4:\x0a\x00\x00\x01") {
		t.Errorf("mapped yourip encoded as %q", b)
	}
}

func TestExtendedHandshakeEmpty(t *testing.T) {
	var h ExtendedHandshake
	b, err := h.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "d1:mdee" {
		t.Fatalf("empty handshake encoded as %q, BEP 10 wants m present", b)
	}
	// A dictionary without "m" is accepted as supporting no extensions.
	got, err := ParseExtendedHandshake([]byte("d1:v3:abce"))
	if err != nil || got.M == nil || len(got.M) != 0 || got.V != "abc" {
		t.Fatalf("got %+v, %v", got, err)
	}
}

func TestExtendedHandshakeEncodeErrors(t *testing.T) {
	for name, h := range map[string]ExtendedHandshake{
		"extra collides":  {Extra: map[string]bencode.RawMessage{"m": bencode.RawMessage("de")}},
		"extra not value": {Extra: map[string]bencode.RawMessage{"x": bencode.RawMessage("d")}},
		"ipv4 holds v6":   {IPv4: netip.MustParseAddr("::1")},
		"ipv6 holds v4":   {IPv6: netip.MustParseAddr("1.2.3.4")},
		"negative reqq":   {Reqq: -1},
		"too large":       {V: strings.Repeat("x", MaxExtendedHandshakeLen)},
	} {
		if b, err := h.AppendBinary([]byte("keep")); err == nil || string(b) != "keep" {
			t.Errorf("%s: got %q, %v; want an error and b unchanged", name, b, err)
		}
		if _, err := h.Message(); err == nil {
			t.Errorf("%s: Message() framed an unencodable handshake", name)
		}
	}
}

func TestParseExtendedHandshakeMalformed(t *testing.T) {
	deep := strings.Repeat("l", 20) + strings.Repeat("e", 20)
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty", "", ErrMalformed},
		{"integer", "i5e", ErrMalformed},
		{"list", "le", ErrMalformed},
		{"string", "3:abc", ErrMalformed},
		{"truncated", "d1:md11:ut_metadatai1e", ErrMalformed},
		{"trailing bytes", "d1:mdeex", ErrMalformed},
		{"m not a dict", "d1:mi1ee", ErrMalformed},
		{"m a list", "d1:mli1eee", ErrMalformed},
		{"duplicate key", "d1:mde1:mdee", ErrMalformed},
		{"too deep", "d1:x" + deep + "e", ErrMalformed},
		{"bad integer", "d1:pi01ee", ErrMalformed},
		{"too large", "d1:v" + "65536:" + strings.Repeat("a", 65536) + "e", ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseExtendedHandshake([]byte(tt.in))
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	many := "d1:md"
	for i := range 600 {
		many += bencodeString(strings.Repeat("x", 4)+string(rune('a'+i%26))+strings.Repeat("y", i/26)) + "i1e"
	}
	many += "ee"
	if _, err := ParseExtendedHandshake([]byte(many)); !errors.Is(err, ErrMalformed) {
		t.Errorf("600 extensions: %v, want ErrMalformed", err)
	}
}

func bencodeString(s string) string {
	b, _ := bencode.Marshal(s)
	return string(b)
}

// Optional fields of the wrong type or range are dropped, not fatal:
// refusing a peer over an unused hint would cost a working connection.
func TestParseExtendedHandshakeLenient(t *testing.T) {
	in := "d" +
		"4:ipv43:\x01\x02\x03" + // 3 bytes: dropped
		"4:ipv64:\x01\x02\x03\x04" + // not 16 bytes: dropped
		"1:md1:ai300e1:bi-1e1:c1:x1:di5ee" + // only d is usable
		"13:metadata_sizei-5e" +
		"1:pi70000e" +
		"4:reqq3:lot" +
		"11:upload_only2:no" +
		"1:vi7e" +
		"6:yourip5:\x01\x02\x03\x04\x05" +
		"e"
	got, err := ParseExtendedHandshake([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := ExtendedHandshake{M: map[string]uint8{"d": 5}}
	if !equalHandshake(&got, &want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestParseExtendedHandshakeDoesNotAlias(t *testing.T) {
	in := []byte("d1:md6:fg_payi1ee1:v3:abc2:zz3:xyze")
	h, err := ParseExtendedHandshake(in)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		in[i] = 0
	}
	if h.V != "abc" || string(h.Extra["zz"]) != "3:xyz" {
		t.Fatalf("result changed with its input: %+v", h)
	}
}
