package bencode

import (
	"bytes"
	"reflect"
	"testing"
)

// fuzzTarget exercises the reflection decoder on the shapes a torrent has.
type fuzzTarget struct {
	Announce string               `bencode:"announce"`
	List     [][]string           `bencode:"announce-list"`
	Info     RawMessage           `bencode:"info"`
	N        int64                `bencode:"n"`
	U        uint16               `bencode:"u"`
	B        bool                 `bencode:"b"`
	H        [4]byte              `bencode:"h"`
	Any      any                  `bencode:"any"`
	M        map[string][]byte    `bencode:"m"`
	P        *struct{ X []int64 } `bencode:"p"`
}

// FuzzDecode checks that no input panics the decoder, that the generic,
// typed and validating entry points agree on what is well-formed, and that
// decode -> encode -> decode is stable (the second encoding is identical).
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		"i0e", "i-1e", "4:spam", "le", "de", "l4:spami42ee",
		"d3:cow3:moo4:spam4:eggse",
		"d1:b1:x1:a1:ye",
		"d8:announce17:http://t/announce4:infod6:lengthi5e4:name1:x12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaaee",
		"d1:hi1e1:ni-5e1:pd1:Xli1ei2eee1:ui70000ee",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var d Decoder
		validErr := d.Valid(data)
		var typed fuzzTarget
		typedErr := d.Unmarshal(data, &typed)
		if validErr != nil && typedErr == nil {
			t.Fatalf("Unmarshal accepted input Valid rejects: %v", validErr)
		}
		v, err := d.Decode(data)
		if err != nil {
			return
		}
		if validErr != nil {
			t.Fatalf("Decode accepted input Valid rejects: %v", validErr)
		}
		enc, err := Marshal(v)
		if err != nil {
			t.Fatalf("Marshal of decoded value: %v", err)
		}
		v2, err := d.Decode(enc)
		if err != nil {
			t.Fatalf("decode of re-encoded value %q: %v", enc, err)
		}
		if !reflect.DeepEqual(v, v2) {
			t.Fatalf("round trip changed the value: %#v -> %#v", v, v2)
		}
		enc2, err := Marshal(v2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("second encoding differs: %q vs %q (%v)", enc, enc2, err)
		}
		if len(enc) > len(data) {
			t.Fatalf("canonical form %d bytes longer than input %d", len(enc), len(data))
		}
	})
}
