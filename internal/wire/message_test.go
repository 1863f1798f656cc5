package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// allMessages has one message of every type the package knows, plus an
// unknown one, each with non-trivial field values.
func allMessages() []Message {
	block := bytes.Repeat([]byte{0xAB}, BlockSize)
	return []Message{
		{Keepalive: true},
		{ID: Choke},
		{ID: Unchoke},
		{ID: Interested},
		{ID: NotInterested},
		NewHave(0xDEADBEEF),
		NewBitfield([]byte{0xFF, 0x80}),
		NewRequest(7, 16384, BlockSize),
		NewPiece(7, 16384, block),
		NewPiece(3, 0, nil),
		NewCancel(7, 16384, BlockSize),
		NewPort(6881),
		NewSuggest(42),
		{ID: HaveAll},
		{ID: HaveNone},
		NewReject(1, 2, 3),
		NewAllowedFast(99),
		NewExtended(0, []byte("d1:md6:fg_payi3eee")),
		NewExtended(3, []byte{1, 2, 3}),
		{ID: 21, Payload: []byte("hash request")},
	}
}

// normalise makes a message comparable with its decoded form: an empty
// payload decodes as nil.
func normalise(m Message) Message {
	if len(m.Payload) == 0 {
		m.Payload = nil
	}
	return m
}

func TestRoundTripEveryMessage(t *testing.T) {
	for _, m := range allMessages() {
		t.Run(m.String(), func(t *testing.T) {
			b, err := m.AppendBinary(nil)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if len(b) != m.EncodedLen() {
				t.Fatalf("encoded %d bytes, EncodedLen says %d", len(b), m.EncodedLen())
			}
			if got := binary.BigEndian.Uint32(b); int(got) != len(b)-4 {
				t.Fatalf("length prefix %d for %d bytes", got, len(b)-4)
			}
			r := NewReader(bytes.NewReader(b), Limits{})
			got, err := r.ReadMessage()
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(normalise(got), normalise(m)) {
				t.Fatalf("decoded %+v, want %+v", got, m)
			}
			if _, err := r.ReadMessage(); err != io.EOF {
				t.Fatalf("after the only message: %v, want io.EOF", err)
			}
		})
	}
}

func TestStreamOfMessages(t *testing.T) {
	var stream []byte
	msgs := allMessages()
	for _, m := range msgs {
		var err error
		if stream, err = m.AppendBinary(stream); err != nil {
			t.Fatal(err)
		}
	}
	// A one-byte-at-a-time reader proves nothing depends on read sizes.
	r := NewReader(&oneByteReader{b: stream}, Limits{})
	for i, want := range msgs {
		got, err := r.ReadMessage()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !reflect.DeepEqual(normalise(got), normalise(want)) {
			t.Fatalf("message %d: got %v, want %v", i, got, want)
		}
	}
	if _, err := r.ReadMessage(); err != io.EOF {
		t.Fatalf("at end: %v, want io.EOF", err)
	}
}

type oneByteReader struct{ b []byte }

func (o *oneByteReader) Read(p []byte) (int, error) {
	if len(o.b) == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = o.b[0]
	o.b = o.b[1:]
	return 1, nil
}

func TestKnownEncodings(t *testing.T) {
	tests := []struct {
		m    Message
		want []byte
	}{
		{Message{Keepalive: true}, []byte{0, 0, 0, 0}},
		{Message{ID: Interested}, []byte{0, 0, 0, 1, 2}},
		{NewHave(0x01020304), []byte{0, 0, 0, 5, 4, 1, 2, 3, 4}},
		{NewRequest(1, 0x4000, 0x4000), []byte{0, 0, 0, 13, 6, 0, 0, 0, 1, 0, 0, 0x40, 0, 0, 0, 0x40, 0}},
		{NewPiece(2, 0, []byte("ab")), []byte{0, 0, 0, 11, 7, 0, 0, 0, 2, 0, 0, 0, 0, 'a', 'b'}},
		{NewPort(0x1AE1), []byte{0, 0, 0, 3, 9, 0x1A, 0xE1}},
		{Message{ID: HaveAll}, []byte{0, 0, 0, 1, 0x0E}},
		{NewExtended(0, []byte("de")), []byte{0, 0, 0, 4, 20, 0, 'd', 'e'}},
		// Fields an ID does not use are not encoded.
		{Message{ID: Choke, Index: 5, Payload: []byte("x")}, []byte{0, 0, 0, 1, 0}},
	}
	for _, tt := range tests {
		got, err := tt.m.AppendBinary([]byte("prefix"))
		if err != nil {
			t.Fatalf("%v: %v", tt.m, err)
		}
		if !bytes.Equal(got, append([]byte("prefix"), tt.want...)) {
			t.Errorf("%v: encoded % x, want prefix+% x", tt.m, got, tt.want)
		}
	}
}

func TestAppendHeaderLeavesPayloadOut(t *testing.T) {
	block := []byte("0123456789")
	m := NewPiece(1, 2, block)
	h, err := m.AppendHeader(nil)
	if err != nil {
		t.Fatal(err)
	}
	full, _ := m.AppendBinary(nil)
	if !bytes.Equal(append(h, block...), full) {
		t.Fatalf("header+payload % x != full % x", append(h, block...), full)
	}
}

// frame builds a message with an explicit length prefix and body, for
// crafting malformed input.
func frame(length uint32, body ...byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, length), body...)
}

func TestMalformed(t *testing.T) {
	bigPrefix := func(id MessageID, n uint32) []byte { return frame(n, byte(id)) }
	tests := []struct {
		name string
		in   []byte
		lim  Limits
		want error
	}{
		{"choke too long", frame(2, 0, 0), Limits{}, ErrMalformed},
		{"have too short", frame(4, 4, 0, 0, 0), Limits{}, ErrMalformed},
		{"have too long", frame(6, 4, 0, 0, 0, 0, 0), Limits{}, ErrMalformed},
		{"request short", frame(12, 6), Limits{}, ErrMalformed},
		{"request long", frame(14, 6), Limits{}, ErrMalformed},
		{"cancel short", frame(9, 8), Limits{}, ErrMalformed},
		{"reject long", frame(17, 0x10), Limits{}, ErrMalformed},
		{"port short", frame(2, 9, 1), Limits{}, ErrMalformed},
		{"have_all long", frame(5, 0x0E, 0, 0, 0, 0), Limits{}, ErrMalformed},
		{"have_none long", frame(2, 0x0F, 0), Limits{}, ErrMalformed},
		{"suggest short", frame(3, 0x0D, 0, 0), Limits{}, ErrMalformed},
		{"allowed_fast long", frame(9, 0x11), Limits{}, ErrMalformed},
		{"piece without begin", frame(5, 7, 0, 0, 0, 1), Limits{}, ErrMalformed},
		{"extended without id", frame(1, 20), Limits{}, ErrMalformed},
		{"piece over default", bigPrefix(Piece, 9+DefaultMaxBlock+1), Limits{}, ErrTooLarge},
		{"piece over custom", bigPrefix(Piece, 9+BlockSize+1), Limits{MaxBlock: BlockSize}, ErrTooLarge},
		{"bitfield over default", bigPrefix(Bitfield, 1+DefaultMaxBitfield+1), Limits{}, ErrTooLarge},
		{"bitfield over piece count", bigPrefix(Bitfield, 1+3), Limits{MaxBitfield: 2}, ErrTooLarge},
		{"extended over default", bigPrefix(Extended, 2+DefaultMaxExtended+1), Limits{}, ErrTooLarge},
		{"unknown over default", bigPrefix(99, 1+DefaultMaxUnknown+1), Limits{}, ErrTooLarge},
		{"max length prefix", bigPrefix(Piece, 0xFFFFFFFF), Limits{}, ErrTooLarge},
		{"max prefix unknown", bigPrefix(200, 0xFFFFFFFF), Limits{}, ErrTooLarge},
		{"truncated prefix", []byte{0, 0}, Limits{}, io.ErrUnexpectedEOF},
		{"truncated before id", frame(1), Limits{}, io.ErrUnexpectedEOF},
		{"truncated fixed fields", frame(13, 6, 0, 0, 0, 1), Limits{}, io.ErrUnexpectedEOF},
		{"truncated piece header", frame(13, 7, 0, 0), Limits{}, io.ErrUnexpectedEOF},
		{"truncated piece block", frame(13, 7, 0, 0, 0, 0, 0, 0, 0, 0, 1), Limits{}, io.ErrUnexpectedEOF},
		{"truncated bitfield", frame(3, 5, 1), Limits{}, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(tt.in), tt.lim)
			m, err := r.ReadMessage()
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, %v; want error %v", m, err, tt.want)
			}
			if err.Error() == tt.want.Error() && tt.want != io.ErrUnexpectedEOF {
				t.Errorf("error %q carries no detail", err)
			}
			// Errors are sticky: the stream position is lost.
			if _, err2 := r.ReadMessage(); err2 != err {
				t.Errorf("second call returned %v, want the same %v", err2, err)
			}
		})
	}
}

func TestLimitsAreInclusive(t *testing.T) {
	lim := Limits{MaxBlock: 4, MaxBitfield: 2, MaxExtended: 3, MaxUnknown: 1}
	for _, m := range []Message{
		NewPiece(0, 0, []byte("abcd")),
		NewBitfield([]byte{1, 2}),
		NewExtended(1, []byte("xyz")),
		{ID: 77, Payload: []byte{9}},
	} {
		b, _ := m.AppendBinary(nil)
		if _, err := NewReader(bytes.NewReader(b), lim).ReadMessage(); err != nil {
			t.Errorf("%v at its limit: %v", m, err)
		}
	}
}

func TestSetLimitsTightensBitfield(t *testing.T) {
	var stream []byte
	stream, _ = (&Message{ID: Unchoke}).AppendBinary(stream)
	bf := NewBitfield([]byte{0xFF, 0xFF, 0xFF})
	stream, _ = bf.AppendBinary(stream)
	r := NewReader(bytes.NewReader(stream), Limits{})
	if _, err := r.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	r.SetLimits(Limits{MaxBitfield: 2}) // a torrent of at most 16 pieces
	if got := r.Limits(); got.MaxBitfield != 2 || got.MaxBlock != DefaultMaxBlock {
		t.Fatalf("Limits() = %+v", got)
	}
	if _, err := r.ReadMessage(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("3-byte bitfield with limit 2: %v", err)
	}
}

func TestUnknownIDPassesThrough(t *testing.T) {
	in := append(frame(4, 0xC8, 'a', 'b', 'c'), frame(1, byte(Interested))...)
	r := NewReader(bytes.NewReader(in), Limits{})
	m, err := r.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != 0xC8 || m.ID.Known() || string(m.Payload) != "abc" {
		t.Fatalf("unknown message decoded as %+v", m)
	}
	if !strings.Contains(m.String(), "unknown(200)") {
		t.Errorf("String() = %q", m.String())
	}
	if m, err := r.ReadMessage(); err != nil || m.ID != Interested {
		t.Fatalf("message after unknown: %v, %v", m, err)
	}
}

func TestReadMessageIntoReusesBuffer(t *testing.T) {
	block := bytes.Repeat([]byte{7}, BlockSize)
	var stream []byte
	for _, m := range []Message{NewPiece(0, 0, block), NewHave(3), NewPiece(0, BlockSize, block[:100])} {
		stream, _ = m.AppendBinary(stream)
	}
	// One byte too small for the first block: a fresh slice is used.
	small := make([]byte, BlockSize-1)
	buf := make([]byte, BlockSize)
	r := NewReader(bytes.NewReader(stream), Limits{})

	m, err := r.ReadMessageInto(small)
	if err != nil || !bytes.Equal(m.Payload, block) || &m.Payload[0] == &small[0] {
		t.Fatalf("block larger than buf: err %v, aliased %v", err, len(m.Payload) > 0 && &m.Payload[0] == &small[0])
	}
	m, err = r.ReadMessageInto(buf)
	if err != nil || m.ID != Have || m.Payload != nil {
		t.Fatalf("have: %+v, %v", m, err)
	}
	m, err = r.ReadMessageInto(buf[:0])
	if err != nil || len(m.Payload) != 100 || &m.Payload[0] != &buf[0] {
		t.Fatalf("small block not read into buf: %v", err)
	}
}

func TestIDHelpers(t *testing.T) {
	for id := 0; id < 256; id++ {
		mid := MessageID(id)
		if mid.Known() != (fixedBodyLen(mid) >= 0 || mid == Piece || mid == Bitfield || mid == Extended) {
			t.Errorf("%d: Known %v disagrees with decoder", id, mid.Known())
		}
		if mid.Known() == strings.HasPrefix(mid.String(), "unknown") {
			t.Errorf("%d: String %q disagrees with Known", id, mid)
		}
	}
	for _, id := range []MessageID{Suggest, HaveAll, HaveNone, Reject, AllowedFast} {
		if !id.IsFast() {
			t.Errorf("%v is a fast message", id)
		}
	}
	if Piece.IsFast() || Extended.IsFast() {
		t.Error("piece/extended are not fast messages")
	}
}
