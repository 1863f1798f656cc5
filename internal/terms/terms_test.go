package terms

import (
	"bytes"
	"crypto/sha1"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/bencode"
	"github.com/floodgate-p2p/floodgate/internal/identity"
	"github.com/floodgate-p2p/floodgate/internal/metainfo"
)

func testKey(b byte) *identity.PrivateKey {
	var seed [32]byte
	seed[0] = b
	return identity.NewKeyFromSeed(seed)
}

// sampleTerms are the three classes of the DESIGN §6 scenario.
func sampleTerms() Terms {
	return Terms{
		Broker: "https://broker.example.com/api",
		Classes: []Class{
			{Name: "gold", MinRate: 2 << 20, PricePerMiB: 30},
			{Name: "live", MinRate: 1 << 20, PricePerMiB: 40, Streaming: true, Startup: 4 * time.Second},
			{Name: "bronze", MinRate: 0, PricePerMiB: 10},
		},
		Default: "bronze",
	}
}

// torrentBytes returns a small plain single-file torrent; seed varies its
// content and so its info hash.
func torrentBytes(t testing.TB, seed string) []byte {
	t.Helper()
	b, err := bencode.Marshal(map[string]any{
		"announce": "http://tracker.example.com/announce",
		"info": map[string]any{
			"name":         "content-" + seed,
			"length":       40000,
			"piece length": 32768,
			"pieces":       strings.Repeat("A", 20) + strings.Repeat(seed[:1], 20),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parseTorrent(t testing.TB, b []byte) *metainfo.MetaInfo {
	t.Helper()
	mi, err := metainfo.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return mi
}

func mustSign(t testing.TB, tm Terms, h metainfo.Hash) Terms {
	t.Helper()
	s, err := Sign(tm, h, testKey(1))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustEncode(t testing.TB, tm *Terms) []byte {
	t.Helper()
	raw, err := tm.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestSignEncodeDecodeVerify(t *testing.T) {
	h := parseTorrent(t, torrentBytes(t, "x")).InfoHash
	signed := mustSign(t, sampleTerms(), h)
	if signed.Provider != testKey(1).Public() {
		t.Fatal("Sign did not set the provider key")
	}
	if err := signed.Verify(h); err != nil {
		t.Fatalf("Verify of freshly signed terms: %v", err)
	}
	raw := mustEncode(t, &signed)
	back, err := Decode(raw)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if !reflect.DeepEqual(*back, signed) {
		t.Fatalf("round trip changed the terms:\n got %+v\nwant %+v", *back, signed)
	}
	if err := back.Verify(h); err != nil {
		t.Fatalf("Verify after round trip: %v", err)
	}
	if err := back.VerifyProvider(h, testKey(1).Public()); err != nil {
		t.Fatalf("VerifyProvider with the right key: %v", err)
	}
	if err := back.VerifyProvider(h, testKey(2).Public()); !errors.Is(err, ErrUntrustedProvider) {
		t.Fatalf("VerifyProvider with another key: %v, want ErrUntrustedProvider", err)
	}
}

// TestGoldenEncoding pins the wire format: a change here breaks every
// published torrent, so it must be deliberate (and bump Version).
func TestGoldenEncoding(t *testing.T) {
	var h metainfo.Hash
	for i := range h {
		h[i] = byte(i)
	}
	tm := Terms{
		Broker:  "http://127.0.0.1:7070",
		Classes: []Class{{Name: "gold", MinRate: 2 << 20, PricePerMiB: 30}, {Name: "live", MinRate: 1 << 20, PricePerMiB: 40, Streaming: true, Startup: 4 * time.Second}},
	}
	signed := mustSign(t, tm, h)
	if signed.Default != "gold" {
		t.Fatalf("Sign did not default to the first class: %q", signed.Default)
	}
	msg, err := signed.signedBytes(h)
	if err != nil {
		t.Fatal(err)
	}
	key := signed.Provider
	wantBody := "d6:broker21:http://127.0.0.1:7070" +
		"7:classesl" +
		"d8:min_ratei2097152e4:name4:gold13:price_per_mibi30e10:startup_msi0e9:streamingi0ee" +
		"d8:min_ratei1048576e4:name4:live13:price_per_mibi40e10:startup_msi4000e9:streamingi1ee" +
		"e7:default4:gold8:provider32:" + string(key[:]) + "7:versioni1ee"
	if want := SignatureTag + string(h[:]) + wantBody; string(msg) != want {
		t.Fatalf("signed message:\n got %q\nwant %q", msg, want)
	}
	raw := mustEncode(t, &signed)
	wantRaw := strings.TrimSuffix(wantBody, "7:versioni1ee") + "3:sig64:" + string(signed.Signature[:]) + "7:versioni1ee"
	if string(raw) != wantRaw {
		t.Fatalf("encoding:\n got %q\nwant %q", raw, wantRaw)
	}
	// Ed25519 is deterministic, so the signature is pinned as well: any
	// other implementation of the format must produce exactly this.
	const wantSig = "f3414dcd1875eb32dc914b5dcb9c33f7cedd9dbcff8cbfbe2ae9d71afd68077322e591b89bfc0c071661aadfccfe0efe2e492467edf6c9aff99f31d53b0c8f0b"
	if got := signed.Signature.String(); got != wantSig {
		t.Fatalf("signature %s, want %s", got, wantSig)
	}
}

func TestAttachKeepsInfoHashAndPlainClientsReadIt(t *testing.T) {
	plain := torrentBytes(t, "x")
	mi := parseTorrent(t, plain)
	before := mi.InfoHash
	if got, err := FromMetaInfo(mi); got != nil || err != nil {
		t.Fatalf("plain torrent: got %v, %v; want nil, nil", got, err)
	}

	signed := mustSign(t, sampleTerms(), mi.InfoHash)
	if err := Attach(mi, &signed); err != nil {
		t.Fatal(err)
	}
	enc, err := mi.Encode()
	if err != nil {
		t.Fatal(err)
	}
	// What any BitTorrent client sees: the same info dictionary and hash.
	back := parseTorrent(t, enc)
	if back.InfoHash != before || sha1.Sum(back.InfoBytes) != before {
		t.Fatalf("info hash changed: %s -> %s", before, back.InfoHash)
	}
	if !bytes.Equal(back.InfoBytes, mi.InfoBytes) {
		t.Fatal("info bytes changed")
	}
	generic, err := bencode.Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := generic.(map[string]any)["floodgate"].(map[string]any); !ok {
		t.Fatal("no top-level floodgate dictionary in the encoded torrent")
	}
	got, err := FromMetaInfo(back)
	if err != nil {
		t.Fatalf("FromMetaInfo: %v", err)
	}
	if !reflect.DeepEqual(*got, signed) {
		t.Fatalf("terms changed on the way through the torrent")
	}
}

func TestAttachRefuses(t *testing.T) {
	mi := parseTorrent(t, torrentBytes(t, "x"))
	other := parseTorrent(t, torrentBytes(t, "y"))
	forOther := mustSign(t, sampleTerms(), other.InfoHash)
	if err := Attach(mi, &forOther); !errors.Is(err, ErrTampered) {
		t.Fatalf("Attach of terms signed for another torrent: %v, want ErrTampered", err)
	}
	if mi.Floodgate != nil {
		t.Fatal("a refused Attach changed the torrent")
	}
	unsigned := sampleTerms()
	unsigned.Provider = testKey(1).Public()
	if err := Attach(mi, &unsigned); !errors.Is(err, ErrTampered) {
		t.Fatalf("Attach of unsigned terms: %v, want ErrTampered", err)
	}
	hand := &metainfo.MetaInfo{Info: mi.Info}
	good := mustSign(t, sampleTerms(), mi.InfoHash)
	if err := Attach(hand, &good); err == nil {
		t.Fatal("Attach to a torrent without info bytes succeeded")
	}
	if err := Attach(nil, &good); err == nil {
		t.Fatal("Attach(nil, ...) succeeded")
	}
	if err := Attach(mi, nil); err == nil {
		t.Fatal("Attach(..., nil) succeeded")
	}
}

// TestTampering changes the terms of a published torrent in every way an
// attacker might and checks that each is refused with the right sentinel.
func TestTampering(t *testing.T) {
	mi := parseTorrent(t, torrentBytes(t, "x"))
	signed := mustSign(t, sampleTerms(), mi.InfoHash)
	if err := Attach(mi, &signed); err != nil {
		t.Fatal(err)
	}
	published := mi.Floodgate

	// reencode applies f to a decoded copy and re-encodes it, keeping the
	// original signature: a well-formed forgery.
	reencode := func(f func(*Terms)) []byte {
		t.Helper()
		tm, err := Decode(published)
		if err != nil {
			t.Fatal(err)
		}
		f(tm)
		return mustEncode(t, tm)
	}
	replaceRaw := func(old, new string) []byte {
		t.Helper()
		if !bytes.Contains(published, []byte(old)) {
			t.Fatalf("%q not in the published terms", old)
		}
		return bytes.Replace(published, []byte(old), []byte(new), 1)
	}
	attacker := testKey(9)
	// A truncated signature: one byte cut from the signature string, with
	// its length prefix fixed so the bencoding stays well-formed.
	at := bytes.Index(published, []byte("3:sig64:")) + len("3:sig64:")
	truncated := append(append(append([]byte{}, published[:at-3]...), "63:"...), published[at:at+63]...)
	truncated = append(truncated, published[at+64:]...)

	cases := []struct {
		name string
		raw  []byte
		// torrent, when set, receives the terms instead of the torrent
		// they were signed for.
		torrent *metainfo.MetaInfo
		want    error
	}{
		{name: "price raised", raw: reencode(func(tm *Terms) { tm.Classes[0].PricePerMiB++ }), want: ErrTampered},
		{name: "price lowered in the raw bytes", raw: replaceRaw("price_per_mibi30e", "price_per_mibi20e"), want: ErrTampered},
		{name: "min rate changed", raw: reencode(func(tm *Terms) { tm.Classes[0].MinRate = 1 << 30 }), want: ErrTampered},
		{name: "class renamed", raw: reencode(func(tm *Terms) { tm.Classes[2].Name = "bronzf"; tm.Default = "bronzf" }), want: ErrTampered},
		{name: "class added", raw: reencode(func(tm *Terms) { tm.Classes = append(tm.Classes, Class{Name: "free", PricePerMiB: 0}) }), want: ErrTampered},
		{name: "class removed", raw: reencode(func(tm *Terms) { tm.Classes = tm.Classes[:2]; tm.Default = "gold" }), want: ErrTampered},
		{name: "classes reordered", raw: reencode(func(tm *Terms) { tm.Classes[0], tm.Classes[2] = tm.Classes[2], tm.Classes[0] }), want: ErrTampered},
		{name: "streaming switched off", raw: reencode(func(tm *Terms) { tm.Classes[1].Streaming = false; tm.Classes[1].Startup = 0 }), want: ErrTampered},
		{name: "startup changed", raw: reencode(func(tm *Terms) { tm.Classes[1].Startup = time.Second }), want: ErrTampered},
		{name: "default changed", raw: reencode(func(tm *Terms) { tm.Default = "gold" }), want: ErrTampered},
		{name: "broker URL changed", raw: reencode(func(tm *Terms) { tm.Broker = "https://evil.example.com/api" }), want: ErrTampered},
		{name: "provider key replaced", raw: reencode(func(tm *Terms) { tm.Provider = attacker.Public() }), want: ErrTampered},
		{name: "signature bit flipped", raw: reencode(func(tm *Terms) { tm.Signature[10] ^= 1 }), want: ErrTampered},
		{name: "signature zeroed", raw: reencode(func(tm *Terms) { tm.Signature = identity.Signature{} }), want: ErrTampered},
		{name: "signature truncated", raw: truncated, want: ErrInvalid},
		{name: "terms moved to another torrent", raw: published, torrent: parseTorrent(t, torrentBytes(t, "y")), want: ErrTampered},
		{name: "extra unsigned key", raw: replaceRaw("7:default", "5:bonusi1e7:default"), want: ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			victim := tc.torrent
			if victim == nil {
				victim = parseTorrent(t, torrentBytes(t, "x"))
			}
			victim.Floodgate = tc.raw
			enc, err := victim.Encode()
			if err != nil {
				t.Fatal(err)
			}
			got, err := FromMetaInfo(parseTorrent(t, enc))
			if !errors.Is(err, tc.want) || got != nil {
				t.Fatalf("got %v, %v; want an error matching %v", got, err, tc.want)
			}
			if !strings.Contains(err.Error(), victim.InfoHash.String()) {
				t.Errorf("error does not name the torrent: %v", err)
			}
		})
	}

	// An attacker may re-sign everything with a key of its own: that
	// verifies (anyone can publish terms) but not against a pinned key.
	resigned, err := Sign(signed, mi.InfoHash, attacker)
	if err != nil {
		t.Fatal(err)
	}
	resigned.Broker = "https://evil.example.com/api"
	resigned, err = Sign(resigned, mi.InfoHash, attacker)
	if err != nil {
		t.Fatal(err)
	}
	if err := resigned.VerifyProvider(mi.InfoHash, testKey(1).Public()); !errors.Is(err, ErrUntrustedProvider) {
		t.Fatalf("re-signed terms against the pinned provider: %v", err)
	}
}

func TestSign(t *testing.T) {
	var h metainfo.Hash
	in := sampleTerms()
	in.Default = ""
	out, err := Sign(in, h, testKey(1))
	if err != nil {
		t.Fatal(err)
	}
	if out.Default != "gold" {
		t.Errorf("Default = %q, want the first class", out.Default)
	}
	out.Classes[0].PricePerMiB = 999
	if in.Classes[0].PricePerMiB == 999 {
		t.Error("Sign's result shares its classes with the input")
	}
	if in.Default != "" || in.Provider != (identity.PublicKey{}) {
		t.Error("Sign changed its input")
	}
	if _, err := Sign(sampleTerms(), h, nil); err == nil {
		t.Error("Sign without a key succeeded")
	}
	bad := sampleTerms()
	bad.Broker = "ftp://broker.example.com"
	if _, err := Sign(bad, h, testKey(1)); !errors.Is(err, ErrInvalid) {
		t.Errorf("Sign of invalid terms: %v, want ErrInvalid", err)
	}
	// Deterministic: the same terms sign to the same bytes.
	again, err := Sign(in, h, testKey(1))
	if err != nil {
		t.Fatal(err)
	}
	if a, b := mustEncode(t, &again), mustEncode(t, &again); !bytes.Equal(a, b) {
		t.Error("encoding is not deterministic")
	}
}

func TestClassLookup(t *testing.T) {
	tm := sampleTerms()
	c, err := tm.Class("")
	if err != nil || c.Name != "bronze" {
		t.Fatalf("Class(\"\") = %+v, %v; want the default class", c, err)
	}
	c, err = tm.Class("live")
	if err != nil || !c.Streaming || c.Startup != 4*time.Second {
		t.Fatalf("Class(live) = %+v, %v", c, err)
	}
	_, err = tm.Class("platinum")
	if !errors.Is(err, ErrUnknownClass) {
		t.Fatalf("Class(platinum): %v, want ErrUnknownClass", err)
	}
	for _, name := range []string{"platinum", "gold", "live", "bronze"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not mention %q", err, name)
		}
	}
	if got := tm.Names(); !reflect.DeepEqual(got, []string{"gold", "live", "bronze"}) {
		t.Errorf("Names() = %v", got)
	}
}

// encodeWire bencodes v for the table below; it bypasses Encode's checks so
// tests can build what a hostile provider might.
func encodeWire(t testing.TB, v any) []byte {
	t.Helper()
	b, err := bencode.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeRejects(t *testing.T) {
	var h metainfo.Hash
	signed := mustSign(t, sampleTerms(), h)
	good := signed.wire(true)
	withWire := func(f func(w *wireTerms)) []byte {
		w := signed.wire(true)
		w.Classes = append([]wireClass{}, good.Classes...)
		f(&w)
		return encodeWire(t, w)
	}
	generic := func(f func(m map[string]any)) []byte {
		var m map[string]any
		if err := bencode.Unmarshal(mustEncode(t, &signed), &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		return encodeWire(t, m)
	}
	firstClass := func(m map[string]any) map[string]any { return m["classes"].([]any)[0].(map[string]any) }
	manyClasses := make([]wireClass, MaxClasses+1)
	for i := range manyClasses {
		manyClasses[i] = wireClass{Name: "c" + strings.Repeat("x", i%30) + string(rune('a'+i%26)) + string(rune('a'+i/26))}
	}

	cases := []struct {
		name, wantMsg string
		raw           []byte
		also          error
	}{
		{"empty", "not a bencoded dictionary", nil, nil},
		{"not a dictionary", "not a bencoded dictionary", []byte("li1ee"), nil},
		{"trailing bytes", "not a bencoded dictionary", append(mustEncode(t, &signed), 'x'), nil},
		{"too large", "at most", bytes.Repeat([]byte{'d'}, MaxEncodedSize+1), nil},
		{"too deep", "over a size limit", []byte("d1:xllleeee"), nil},
		{"no version", `missing key "version"`, generic(func(m map[string]any) { delete(m, "version") }), nil},
		{"version 2", "unsupported terms version 2", withWire(func(w *wireTerms) { w.Version = 2 }), ErrUnsupportedVersion},
		{"version 2 with new keys", "unsupported terms version 2", generic(func(m map[string]any) { m["version"] = int64(2); m["zzz"] = "new" }), ErrUnsupportedVersion},
		{"version a string", "version", generic(func(m map[string]any) { m["version"] = "1" }), nil},
		{"unknown key", `unknown key "bonus"`, generic(func(m map[string]any) { m["bonus"] = int64(1) }), nil},
		{"missing broker", `missing key "broker"`, generic(func(m map[string]any) { delete(m, "broker") }), nil},
		{"missing sig", `missing key "sig"`, generic(func(m map[string]any) { delete(m, "sig") }), nil},
		{"unknown class key", `unknown key "classes[0].colour"`, generic(func(m map[string]any) { firstClass(m)["colour"] = "red" }), nil},
		{"missing class key", `missing key "classes[0].streaming"`, generic(func(m map[string]any) { delete(firstClass(m), "streaming") }), nil},
		{"classes not a list", "classes must be a list", generic(func(m map[string]any) { m["classes"] = "gold" }), nil},
		{"class not a dict", "classes must be a list", generic(func(m map[string]any) { m["classes"] = []any{int64(1)} }), nil},
		{"price a string", "price_per_mib", generic(func(m map[string]any) { firstClass(m)["price_per_mib"] = "30" }), nil},
		{"streaming 2", "streaming", generic(func(m map[string]any) { firstClass(m)["streaming"] = int64(2) }), nil},
		{"provider short", "provider", generic(func(m map[string]any) { m["provider"] = "short" }), nil},
		{"provider zero", "all zeros", withWire(func(w *wireTerms) { w.Provider = [32]byte{} }), nil},
		{"sig short", "sig is 63 bytes", withWire(func(w *wireTerms) { w.Sig = w.Sig[:63] }), nil},
		{"sig long", "sig is 65 bytes", withWire(func(w *wireTerms) { w.Sig = append(append([]byte{}, w.Sig...), 0) }), nil},
		{"no classes", "no service classes", withWire(func(w *wireTerms) { w.Classes = []wireClass{} }), nil},
		{"too many classes", "over a size limit", withWire(func(w *wireTerms) { w.Classes = manyClasses; w.Default = manyClasses[0].Name }), bencode.ErrLimitExceeded},
		{"duplicate class", `class name "gold" appears twice`, withWire(func(w *wireTerms) { w.Classes[1].Name = "gold" }), nil},
		{"unknown default", `default class "platinum"`, withWire(func(w *wireTerms) { w.Default = "platinum" }), nil},
		{"empty default", `default class ""`, withWire(func(w *wireTerms) { w.Default = "" }), nil},
		{"upper-case name", "only a-z", withWire(func(w *wireTerms) { w.Classes[0].Name = "Gold" }), nil},
		{"long name", "1..32 bytes", withWire(func(w *wireTerms) { w.Classes[0].Name = strings.Repeat("g", 33) }), nil},
		{"empty name", "1..32 bytes", withWire(func(w *wireTerms) { w.Classes[0].Name = "" }), nil},
		{"negative price", "price_per_mib -1", withWire(func(w *wireTerms) { w.Classes[0].PricePerMiB = -1 }), nil},
		{"huge price", "price_per_mib", withWire(func(w *wireTerms) { w.Classes[0].PricePerMiB = MaxPricePerMiB + 1 }), nil},
		{"negative rate", "min_rate -1", withWire(func(w *wireTerms) { w.Classes[0].MinRate = -1 }), nil},
		{"huge rate", "min_rate", withWire(func(w *wireTerms) { w.Classes[0].MinRate = MaxMinRate + 1 }), nil},
		{"stream without rate", "needs its play-out rate", withWire(func(w *wireTerms) { w.Classes[1].MinRate = 0 }), nil},
		{"startup without stream", "only meaningful for a streaming class", withWire(func(w *wireTerms) { w.Classes[0].StartupMS = 5 }), nil},
		{"negative startup", "startup_ms -1", withWire(func(w *wireTerms) { w.Classes[1].StartupMS = -1 }), nil},
		{"huge startup", "startup_ms 9223372036854775807", withWire(func(w *wireTerms) { w.Classes[1].StartupMS = 1<<63 - 1 }), nil},
		{"no broker", "no broker URL", withWire(func(w *wireTerms) { w.Broker = "" }), nil},
		{"ftp broker", "scheme must be http or https", withWire(func(w *wireTerms) { w.Broker = "ftp://broker.example.com" }), nil},
		{"relative broker", "scheme must be http or https", withWire(func(w *wireTerms) { w.Broker = "/api" }), nil},
		{"broker without host", "has no host", withWire(func(w *wireTerms) { w.Broker = "https:///api" }), nil},
		{"broker with port only", "has no host", withWire(func(w *wireTerms) { w.Broker = "https://:80/api" }), nil},
		{"broker with credentials", "credentials", withWire(func(w *wireTerms) { w.Broker = "https://user:pw@broker.example.com" }), nil},
		{"broker with query", "query or fragment", withWire(func(w *wireTerms) { w.Broker = "https://broker.example.com/?a=1" }), nil},
		{"broker with fragment", "query or fragment", withWire(func(w *wireTerms) { w.Broker = "https://broker.example.com/#x" }), nil},
		{"broker with space", "printable ASCII", withWire(func(w *wireTerms) { w.Broker = "https://broker.example.com/a b" }), nil},
		{"broker with unicode", "printable ASCII", withWire(func(w *wireTerms) { w.Broker = "https://bröker.example.com/" }), nil},
		{"broker too long", "over a size limit", withWire(func(w *wireTerms) { w.Broker = "https://b.example.com/" + strings.Repeat("a", MaxBrokerURLLen) }), bencode.ErrLimitExceeded},
		{"keys unsorted", "canonical form", []byte("d7:versioni1e" + strings.TrimPrefix(strings.TrimSuffix(string(mustEncode(t, &signed)), "7:versioni1ee"), "d") + "e"), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(tc.raw)
			if err == nil {
				t.Fatalf("Decode accepted %q as %+v", tc.raw, got)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not match ErrInvalid", err)
			}
			if tc.also != nil && !errors.Is(err, tc.also) {
				t.Errorf("error %v does not match %v", err, tc.also)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not say %q", err, tc.wantMsg)
			}
		})
	}
}

// TestDecodeAcceptsTheLimits checks that terms at every limit still decode,
// so the limits are limits and not off by one.
func TestDecodeAcceptsTheLimits(t *testing.T) {
	tm := Terms{Broker: "https://b.example.com/" + strings.Repeat("a", MaxBrokerURLLen-len("https://b.example.com/"))}
	for i := 0; i < MaxClasses; i++ {
		name := strings.Repeat("x", MaxClassNameLen-2) + string(rune('a'+i%26)) + string(rune('a'+i/26))
		tm.Classes = append(tm.Classes, Class{Name: name, MinRate: MaxMinRate, PricePerMiB: MaxPricePerMiB, Streaming: true, Startup: MaxStartup})
	}
	var h metainfo.Hash
	signed := mustSign(t, tm, h)
	raw := mustEncode(t, &signed)
	if len(raw) > MaxEncodedSize {
		t.Fatalf("largest valid terms take %d bytes, over MaxEncodedSize %d", len(raw), MaxEncodedSize)
	}
	t.Logf("largest valid terms: %d bytes", len(raw))
	back, err := Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := back.Verify(h); err != nil {
		t.Fatal(err)
	}
}

func TestValidateAcceptsBrokerURLs(t *testing.T) {
	for _, u := range []string{
		"http://127.0.0.1:7070",
		"http://[::1]:7070/",
		"https://broker.example.com",
		"https://broker.example.com:8443/base/path/",
		"http://localhost/api%20v1",
	} {
		tm := sampleTerms()
		tm.Broker = u
		tm.Provider = testKey(1).Public()
		if err := tm.Validate(); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}

func TestFromMetaInfoNil(t *testing.T) {
	if _, err := FromMetaInfo(nil); err == nil {
		t.Fatal("FromMetaInfo(nil) succeeded")
	}
}
