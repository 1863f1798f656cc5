package bencode

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestDecodeGeneric(t *testing.T) {
	tests := []struct {
		in   string
		want any
	}{
		{"i0e", int64(0)},
		{"i42e", int64(42)},
		{"i-42e", int64(-42)},
		{"i9223372036854775807e", int64(math.MaxInt64)},
		{"i-9223372036854775808e", int64(math.MinInt64)},
		{"0:", ""},
		{"4:spam", "spam"},
		{"le", []any{}},
		{"l4:spami7ee", []any{"spam", int64(7)}},
		{"de", map[string]any{}},
		{"d3:cow3:moo4:spam4:eggse", map[string]any{"cow": "moo", "spam": "eggs"}},
		{"d4:spaml1:a1:bee", map[string]any{"spam": []any{"a", "b"}}},
		// Unsorted keys are accepted (see the package comment).
		{"d1:b1:x1:a1:ye", map[string]any{"a": "y", "b": "x"}},
		{"d1:ai1e1:c2:zz1:bi2ee", map[string]any{"a": int64(1), "b": int64(2), "c": "zz"}},
	}
	for _, tt := range tests {
		got, err := Decode([]byte(tt.in))
		if err != nil {
			t.Errorf("Decode(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Decode(%q) = %#v, want %#v", tt.in, got, tt.want)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		in     string
		offset int
		msg    string
		errIs  error
		limits Limits
		// typedOnly marks input that is well-formed bencode but has no
		// generic (int64) form, so Valid accepts it.
		typedOnly bool
	}{
		{in: "", offset: 0, msg: "unexpected end"},
		{in: "i", offset: 1, msg: "unexpected end"},
		{in: "ie", offset: 0, msg: "empty integer"},
		{in: "i-e", offset: 0, msg: "empty integer"},
		{in: "i-0e", offset: 0, msg: "negative zero"},
		{in: "i03e", offset: 0, msg: "leading zero"},
		{in: "i-03e", offset: 0, msg: "leading zero"},
		{in: "i00e", offset: 0, msg: "leading zero"},
		{in: "i1x", offset: 2, msg: "invalid byte"},
		{in: "i+1e", offset: 1, msg: "invalid byte"},
		{in: "i9223372036854775808e", offset: 0, msg: "out of int64 range", typedOnly: true},
		{in: "i99999999999999999999999e", offset: 0, msg: "out of range"},
		{in: "-1:a", offset: 0, msg: "invalid byte '-'"},
		{in: "01:a", offset: 0, msg: "leading zero"},
		{in: "5:abc", offset: 0, msg: "runs past the end"},
		{in: "3", offset: 1, msg: "unexpected end"},
		{in: "3x", offset: 1, msg: "invalid byte"},
		{in: "l", offset: 1, msg: "unexpected end"},
		{in: "li1e", offset: 4, msg: "unexpected end"},
		{in: "d", offset: 1, msg: "unexpected end"},
		{in: "d1:a", offset: 4, msg: "unexpected end"},
		{in: "di1ei2ee", offset: 1, msg: "dict key must be a string"},
		{in: "d1:ai1e1:ai2ee", offset: 7, msg: "duplicate", errIs: ErrDuplicateKey},
		{in: "d1:bi1e1:ai2e1:bi3ee", offset: 13, msg: "duplicate", errIs: ErrDuplicateKey},
		{in: "i1ei2e", offset: 3, msg: "trailing", errIs: ErrTrailingData},
		{in: "4:spamX", offset: 6, msg: "trailing", errIs: ErrTrailingData},
		{in: "x", offset: 0, msg: "invalid byte 'x'"},
		{in: "lllee", offset: 2, msg: "nesting", errIs: ErrLimitExceeded, limits: Limits{MaxDepth: 2}},
		{in: "5:abcde", offset: 0, msg: "longer than the limit", errIs: ErrLimitExceeded, limits: Limits{MaxStringLength: 4}},
		{in: "li1ei2ei3ee", offset: 7, msg: "longer than the limit", errIs: ErrLimitExceeded, limits: Limits{MaxEntries: 2}},
		{in: "d1:ai1e1:bi1e1:ci1ee", offset: 13, msg: "larger than the limit", errIs: ErrLimitExceeded, limits: Limits{MaxEntries: 2}},
		{in: strings.Repeat("l", 65) + strings.Repeat("e", 65), offset: 64, msg: "nesting", errIs: ErrLimitExceeded},
	}
	for _, tt := range tests {
		d := NewDecoder(tt.limits)
		_, err := d.Decode([]byte(tt.in))
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("Decode(%q) error = %v, want SyntaxError", tt.in, err)
			continue
		}
		if se.Offset != tt.offset || !strings.Contains(se.Error(), tt.msg) {
			t.Errorf("Decode(%q) = %q (offset %d), want %q at offset %d", tt.in, se, se.Offset, tt.msg, tt.offset)
		}
		if tt.errIs != nil && !errors.Is(err, tt.errIs) {
			t.Errorf("Decode(%q) = %v, want errors.Is %v", tt.in, err, tt.errIs)
		}
		// The typed and validating entry points must agree with Decode.
		var x any
		if err := d.Unmarshal([]byte(tt.in), &x); err == nil {
			t.Errorf("Unmarshal(%q) succeeded", tt.in)
		}
		if err := d.Valid([]byte(tt.in)); err == nil && !tt.typedOnly {
			t.Errorf("Valid(%q) succeeded", tt.in)
		}
	}
}

type inner struct {
	Path   []string `bencode:"path"`
	Length int64    `bencode:"length"`
}

type embedded struct {
	Shadowed string `bencode:"a"`
	Extra    int    `bencode:"extra"`
}

type sample struct {
	embedded
	A       string         `bencode:"a"`
	B       int            `bencode:"b,omitempty"`
	Skip    string         `bencode:"-"`
	Bytes   []byte         `bencode:"bytes,omitempty"`
	Hash    [4]byte        `bencode:"hash"`
	Files   []inner        `bencode:"files,omitempty"`
	Flag    bool           `bencode:"flag"`
	U8      uint8          `bencode:"u8"`
	I16     int16          `bencode:"i16"`
	Ptr     *int           `bencode:"ptr"`
	Any     any            `bencode:"any,omitempty"`
	M       map[string]int `bencode:"m,omitempty"`
	Raw     RawMessage     `bencode:"raw,omitempty"`
	Untag   string
	private int
	Arr     [2]string         `bencode:"arr"`
	Named   map[string]string `bencode:"named,omitempty"`
}

func TestStructRoundTrip(t *testing.T) {
	seven := 7
	in := sample{
		embedded: embedded{Shadowed: "lost", Extra: 3},
		A:        "x",
		Bytes:    []byte{0, 1, 2},
		Hash:     [4]byte{'a', 'b', 'c', 'd'},
		Files:    []inner{{Path: []string{"d", "f"}, Length: 5}},
		Flag:     true,
		U8:       255,
		I16:      -300,
		Ptr:      &seven,
		Any:      map[string]any{"k": []any{int64(1), "v"}},
		M:        map[string]int{"z": 1, "y": 2},
		Raw:      RawMessage("d1:xi1ee"),
		Untag:    "u",
		Arr:      [2]string{"p", "q"},
	}
	b, err := Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	want := "d5:Untag1:u1:a1:x3:any" + "d1:kli1e1:vee" + "3:arrl1:p1:qe" + "5:bytes3:\x00\x01\x02" +
		"5:extrai3e" + "5:filesld6:lengthi5e4:pathl1:d1:feee" + "4:flagi1e" + "4:hash4:abcd" +
		"3:i16i-300e" + "1:md1:yi2e1:zi1ee" + "3:ptri7e" + "3:rawd1:xi1ee" + "2:u8i255ee"
	if string(b) != want {
		t.Fatalf("Marshal =\n%q\nwant\n%q", b, want)
	}
	var out sample
	if err := Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	in.embedded.Shadowed = "" // shadowed by the outer "a", so never written
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", out, in)
	}
}

func TestUnmarshalIgnoresUnknownKeysButValidatesThem(t *testing.T) {
	var v struct {
		A int `bencode:"a"`
	}
	if err := Unmarshal([]byte("d1:ai1e1:zd1:xl4:spamee1:bi2ee"), &v); err == nil || v.A != 1 {
		// "b" after "z" is unsorted, which is allowed.
		if err != nil {
			t.Fatalf("unexpected error %v", err)
		}
	}
	if err := Unmarshal([]byte("d1:ai1e1:zi01ee"), &v); err == nil {
		t.Fatal("malformed unknown value accepted")
	}
}

func TestUnmarshalTypeErrors(t *testing.T) {
	type files struct {
		Files []inner `bencode:"files"`
	}
	tests := []struct {
		in     string
		target any
		field  string
		offset int
	}{
		{"i300e", new(uint8), "", 0},
		{"i-1e", new(uint64), "", 0},
		{"i128e", new(int8), "", 0},
		{"i2e", new(bool), "", 0},
		{"4:spam", new(int), "", 0},
		{"i1e", new(string), "", 0},
		{"3:abc", new([4]byte), "", 0},
		{"li1ee", new([2]int), "", 0},
		{"li1ei2ei3ee", new([2]int), "", 0},
		{"le", new(map[string]int), "", 0},
		{"de", new([]int), "", 0},
		{"le", new([]byte), "", 0},
		{"d5:filesld6:lengthi1e4:pathl1:aeed6:length1:x4:pathl1:beeee", new(files), "files[1].length", 42},
	}
	for _, tt := range tests {
		err := Unmarshal([]byte(tt.in), tt.target)
		var te *UnmarshalTypeError
		if !errors.As(err, &te) {
			t.Errorf("Unmarshal(%q, %T) = %v, want UnmarshalTypeError", tt.in, tt.target, err)
			continue
		}
		if te.Field != tt.field || te.Offset != tt.offset {
			t.Errorf("Unmarshal(%q, %T) = %v; field %q offset %d, want %q %d", tt.in, tt.target, err, te.Field, te.Offset, tt.field, tt.offset)
		}
	}
}

func TestUnmarshalIntegerRanges(t *testing.T) {
	var u uint64
	if err := Unmarshal([]byte("i18446744073709551615e"), &u); err != nil || u != math.MaxUint64 {
		t.Fatalf("uint64 max: %v %d", err, u)
	}
	var i8 int8
	if err := Unmarshal([]byte("i-128e"), &i8); err != nil || i8 != -128 {
		t.Fatalf("int8 min: %v %d", err, i8)
	}
	var b bool
	if err := Unmarshal([]byte("i1e"), &b); err != nil || !b {
		t.Fatalf("bool: %v %v", err, b)
	}
}

func TestUnmarshalInvalidTarget(t *testing.T) {
	var ie *InvalidUnmarshalError
	if err := Unmarshal([]byte("i1e"), 5); !errors.As(err, &ie) {
		t.Fatalf("non-pointer: %v", err)
	}
	if err := Unmarshal([]byte("i1e"), (*int)(nil)); !errors.As(err, &ie) {
		t.Fatalf("nil pointer: %v", err)
	}
	if err := Unmarshal([]byte("i1e"), nil); !errors.As(err, &ie) {
		t.Fatalf("nil: %v", err)
	}
}

func TestRawMessageKeepsExactBytes(t *testing.T) {
	// The info dict is unsorted and must come back untouched.
	in := []byte("d4:infod4:name1:x12:piece lengthi16384e6:lengthi1ee3:zzzi1ee")
	var v struct {
		Info RawMessage `bencode:"info"`
	}
	if err := Unmarshal(in, &v); err != nil {
		t.Fatal(err)
	}
	if string(v.Info) != "d4:name1:x12:piece lengthi16384e6:lengthi1ee" {
		t.Fatalf("raw = %q", v.Info)
	}
	in[10] = 'Q' // the RawMessage must be a copy, not an alias
	if v.Info[3] == 'Q' {
		t.Fatal("RawMessage aliases the input")
	}
	out, err := Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "d4:infod4:name1:x12:piece lengthi16384e6:lengthi1eee" {
		t.Fatalf("Marshal = %q", out)
	}
}

func TestUnmarshalPrefix(t *testing.T) {
	msg := []byte("d8:msg_typei1e5:piecei0eeRAWPAYLOAD")
	var hdr struct {
		Type  int `bencode:"msg_type"`
		Piece int `bencode:"piece"`
	}
	var d Decoder
	n, err := d.UnmarshalPrefix(msg, &hdr)
	if err != nil {
		t.Fatal(err)
	}
	if string(msg[n:]) != "RAWPAYLOAD" || hdr.Type != 1 {
		t.Fatalf("n=%d hdr=%+v", n, hdr)
	}
}

type upper string

func (u upper) MarshalBencode() ([]byte, error) {
	return Marshal(strings.ToUpper(string(u)))
}

func (u *upper) UnmarshalBencode(b []byte) error {
	var s string
	if err := Unmarshal(b, &s); err != nil {
		return err
	}
	*u = upper(strings.ToLower(s))
	return nil
}

type broken struct{}

func (broken) MarshalBencode() ([]byte, error) { return []byte("i1ei2e"), nil }

func TestMarshalerAndUnmarshaler(t *testing.T) {
	b, err := Marshal(map[string]upper{"k": "abc"})
	if err != nil || string(b) != "d1:k3:ABCe" {
		t.Fatalf("Marshal = %q, %v", b, err)
	}
	var m map[string]*upper
	if err := Unmarshal(b, &m); err != nil || *m["k"] != "abc" {
		t.Fatalf("Unmarshal = %v, %v", m, err)
	}
	if _, err := Marshal(broken{}); err == nil {
		t.Fatal("invalid Marshaler output accepted")
	}
}

func TestMarshalErrors(t *testing.T) {
	type cyc struct {
		Next *cyc `bencode:"n"`
	}
	loop := &cyc{}
	loop.Next = loop
	tests := []any{
		nil,
		1.5,
		make(chan int),
		map[int]string{1: "a"},
		[]*int{nil},
		[]any{nil},
		loop,
		RawMessage(nil),
	}
	for _, v := range tests {
		if b, err := Marshal(v); err == nil {
			t.Errorf("Marshal(%T) = %q, want error", v, b)
		}
	}
}

func TestMarshalCanonical(t *testing.T) {
	tests := []struct {
		in   any
		want string
	}{
		{int64(math.MinInt64), "i-9223372036854775808e"},
		{uint64(math.MaxUint64), "i18446744073709551615e"},
		{false, "i0e"},
		{"", "0:"},
		{[]int(nil), "le"},
		{map[string]int(nil), "de"},
		{[]byte(nil), "0:"},
		// Keys sort by raw bytes: upper case before lower, shorter prefix first.
		{map[string]int{"b": 1, "a": 2, "B": 3, "ab": 4, "\xff": 5}, "d1:Bi3e1:ai2e2:abi4e1:bi1e1:\xffi5ee"},
		{struct {
			Z int `bencode:"z"`
			P *int
		}{Z: 1}, "d1:zi1ee"},
	}
	for _, tt := range tests {
		b, err := Marshal(tt.in)
		if err != nil || string(b) != tt.want {
			t.Errorf("Marshal(%#v) = %q, %v; want %q", tt.in, b, err, tt.want)
		}
	}
}

func TestUnsortedHostileDictIsLinear(t *testing.T) {
	// A large dictionary in descending key order exercises the set-based
	// duplicate check; this asserts correctness, the linear cost is what
	// keeps it fast.
	var buf bytes.Buffer
	buf.WriteByte('d')
	const n = 50000
	for i := n; i > 0; i-- {
		k := []byte{byte(i >> 16), byte(i >> 8), byte(i)}
		buf.WriteString("3:")
		buf.Write(k)
		buf.WriteString("i1e")
	}
	buf.WriteByte('e')
	v, err := Decode(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(v.(map[string]any)) != n {
		t.Fatalf("got %d keys", len(v.(map[string]any)))
	}
	// Repeat the last key: it must be caught.
	dup := append(bytes.Clone(buf.Bytes()[:buf.Len()-1]), "3:\x00\x00\x01i1ee"...)
	if _, err := Decode(dup); !errors.Is(err, ErrDuplicateKey) {
		t.Fatalf("duplicate not caught: %v", err)
	}
}

func BenchmarkDecodeLargeTorrent(b *testing.B) {
	// About 2 MB: 100,000 piece hashes and 2,000 files.
	type file struct {
		Length int64    `bencode:"length"`
		Path   []string `bencode:"path"`
	}
	var info struct {
		Files       []file `bencode:"files"`
		Name        string `bencode:"name"`
		PieceLength int64  `bencode:"piece length"`
		Pieces      []byte `bencode:"pieces"`
	}
	info.Name = "big"
	info.PieceLength = 1 << 18
	info.Pieces = make([]byte, 20*100000)
	for i := 0; i < 2000; i++ {
		info.Files = append(info.Files, file{Length: int64(i), Path: []string{"dir", "file" + strings.Repeat("x", i%50)}})
	}
	data, err := Marshal(map[string]any{"announce": "http://t/announce", "info": info})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var v struct {
			Info RawMessage `bencode:"info"`
		}
		if err := Unmarshal(data, &v); err != nil {
			b.Fatal(err)
		}
		var w struct {
			Info struct {
				Files  []file `bencode:"files"`
				Pieces []byte `bencode:"pieces"`
			} `bencode:"info"`
		}
		if err := Unmarshal(data, &w); err != nil {
			b.Fatal(err)
		}
	}
}
