package wire

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
)

// BlockSize is the block length every client requests (BEP 3 says 2^14 is
// what all current implementations use and close connections asking for
// more), and so the length of nearly every piece message's payload.
const BlockSize = 16 << 10

// MessageID is the one-byte type that follows a message's length prefix.
type MessageID uint8

// Message IDs of BEP 3, BEP 5 (Port), BEP 6 (fast extension) and BEP 10
// (Extended). IDs not listed here are passed through by the Reader so the
// caller can ignore them, as BEP 3 asks.
const (
	Choke         MessageID = 0
	Unchoke       MessageID = 1
	Interested    MessageID = 2
	NotInterested MessageID = 3
	Have          MessageID = 4
	Bitfield      MessageID = 5
	Request       MessageID = 6
	Piece         MessageID = 7
	Cancel        MessageID = 8
	Port          MessageID = 9
	Suggest       MessageID = 0x0D
	HaveAll       MessageID = 0x0E
	HaveNone      MessageID = 0x0F
	Reject        MessageID = 0x10
	AllowedFast   MessageID = 0x11
	Extended      MessageID = 20
)

// String returns the BEP name of the ID, or "unknown(N)".
func (id MessageID) String() string {
	switch id {
	case Choke:
		return "choke"
	case Unchoke:
		return "unchoke"
	case Interested:
		return "interested"
	case NotInterested:
		return "not_interested"
	case Have:
		return "have"
	case Bitfield:
		return "bitfield"
	case Request:
		return "request"
	case Piece:
		return "piece"
	case Cancel:
		return "cancel"
	case Port:
		return "port"
	case Suggest:
		return "suggest_piece"
	case HaveAll:
		return "have_all"
	case HaveNone:
		return "have_none"
	case Reject:
		return "reject_request"
	case AllowedFast:
		return "allowed_fast"
	case Extended:
		return "extended"
	}
	return "unknown(" + strconv.Itoa(int(id)) + ")"
}

// IsFast reports whether id belongs to the BEP 6 fast extension, whose
// messages a peer may only send when both handshakes set the fast bit.
func (id MessageID) IsFast() bool {
	switch id {
	case Suggest, HaveAll, HaveNone, Reject, AllowedFast:
		return true
	}
	return false
}

// Known reports whether the package decodes id's fields; other IDs are
// returned by the Reader with their raw body in Payload.
func (id MessageID) Known() bool {
	return id <= Port || id.IsFast() || id == Extended
}

// fixedBodyLen returns the exact length (ID byte included) of messages
// whose size BEP 3/5/6 fixes, or -1 for variable-size and unknown IDs.
func fixedBodyLen(id MessageID) int {
	switch id {
	case Choke, Unchoke, Interested, NotInterested, HaveAll, HaveNone:
		return 1
	case Have, Suggest, AllowedFast:
		return 5
	case Request, Cancel, Reject:
		return 13
	case Port:
		return 3
	}
	return -1
}

// Message is one decoded peer wire message. Only the fields that the ID
// uses are meaningful; the others are zero after decoding and ignored when
// encoding.
type Message struct {
	// Keepalive marks the zero-length message; when set, nothing else is
	// meaningful.
	Keepalive bool
	// ID is the message type.
	ID MessageID
	// Index is the piece index of have, request, cancel, reject, piece,
	// suggest_piece and allowed_fast.
	Index uint32
	// Begin is the byte offset within the piece of request, cancel,
	// reject and piece.
	Begin uint32
	// Length is the block length of request, cancel and reject. For a
	// piece message the length is len(Payload).
	Length uint32
	// Payload is the bitfield bytes, the piece block, the extended
	// message body (after the extended ID byte) or, for an unknown ID, the
	// whole body after the ID byte.
	Payload []byte
	// ExtendedID is the BEP 10 extended message ID: 0 for the extension
	// handshake, otherwise an ID the receiver assigned in its handshake.
	ExtendedID uint8
	// Port is the DHT port of a port message (BEP 5).
	Port uint16
}

// NewHave returns a have message for piece index.
func NewHave(index uint32) Message { return Message{ID: Have, Index: index} }

// NewBitfield returns a bitfield message; payload is referenced, not copied.
func NewBitfield(payload []byte) Message { return Message{ID: Bitfield, Payload: payload} }

// NewRequest returns a request for length bytes at begin within piece index.
func NewRequest(index, begin, length uint32) Message {
	return Message{ID: Request, Index: index, Begin: begin, Length: length}
}

// NewCancel returns a cancel for a previously sent request.
func NewCancel(index, begin, length uint32) Message {
	return Message{ID: Cancel, Index: index, Begin: begin, Length: length}
}

// NewReject returns a BEP 6 reject_request for a request the peer sent.
func NewReject(index, begin, length uint32) Message {
	return Message{ID: Reject, Index: index, Begin: begin, Length: length}
}

// NewPiece returns a piece message carrying block; block is referenced,
// not copied.
func NewPiece(index, begin uint32, block []byte) Message {
	return Message{ID: Piece, Index: index, Begin: begin, Payload: block}
}

// NewExtended returns a BEP 10 extended message; payload is referenced.
func NewExtended(extendedID uint8, payload []byte) Message {
	return Message{ID: Extended, ExtendedID: extendedID, Payload: payload}
}

// NewPort returns a BEP 5 port message.
func NewPort(port uint16) Message { return Message{ID: Port, Port: port} }

// NewSuggest returns a BEP 6 suggest_piece message.
func NewSuggest(index uint32) Message { return Message{ID: Suggest, Index: index} }

// NewAllowedFast returns a BEP 6 allowed_fast message.
func NewAllowedFast(index uint32) Message { return Message{ID: AllowedFast, Index: index} }

// headerLen is the encoded length of m without its Payload: the length
// prefix, the ID and the fixed fields.
func (m *Message) headerLen() int {
	if m.Keepalive {
		return 4
	}
	if n := fixedBodyLen(m.ID); n >= 0 {
		return 4 + n
	}
	switch m.ID {
	case Piece:
		return 4 + 9
	case Extended:
		return 4 + 2
	}
	return 4 + 1 // bitfield and unknown IDs: ID then raw payload
}

// carriesPayload reports whether Payload is part of m's encoding.
func (m *Message) carriesPayload() bool {
	return !m.Keepalive && fixedBodyLen(m.ID) < 0
}

// EncodedLen is the number of bytes AppendBinary appends for m.
func (m *Message) EncodedLen() int {
	n := m.headerLen()
	if m.carriesPayload() {
		n += len(m.Payload)
	}
	return n
}

// AppendBinary appends the wire encoding of m to b, without allocating
// when b has room. It fails only when the message cannot be framed (a
// payload beyond the 32-bit length prefix).
func (m *Message) AppendBinary(b []byte) ([]byte, error) {
	b, err := m.AppendHeader(b)
	if err != nil {
		return b, err
	}
	if m.carriesPayload() {
		b = append(b, m.Payload...)
	}
	return b, nil
}

// AppendHeader appends everything of m's encoding except Payload: the
// length prefix (which counts the payload), the ID and the fixed fields.
// A writer can then send the payload from where it already lies (for
// example with net.Buffers) instead of copying a 16 KiB block.
func (m *Message) AppendHeader(b []byte) ([]byte, error) {
	if m.Keepalive {
		return binary.BigEndian.AppendUint32(b, 0), nil
	}
	hl := m.headerLen()
	total := uint64(hl - 4)
	if m.carriesPayload() {
		total += uint64(len(m.Payload))
	}
	if total > math.MaxUint32 {
		return b, fmt.Errorf("wire: encode %v: payload of %d bytes does not fit a length prefix", m.ID, len(m.Payload))
	}
	b = binary.BigEndian.AppendUint32(b, uint32(total))
	b = append(b, byte(m.ID))
	switch m.ID {
	case Have, Suggest, AllowedFast:
		b = binary.BigEndian.AppendUint32(b, m.Index)
	case Request, Cancel, Reject:
		b = binary.BigEndian.AppendUint32(b, m.Index)
		b = binary.BigEndian.AppendUint32(b, m.Begin)
		b = binary.BigEndian.AppendUint32(b, m.Length)
	case Piece:
		b = binary.BigEndian.AppendUint32(b, m.Index)
		b = binary.BigEndian.AppendUint32(b, m.Begin)
	case Port:
		b = binary.BigEndian.AppendUint16(b, m.Port)
	case Extended:
		b = append(b, m.ExtendedID)
	}
	return b, nil
}

// String formats m for logs without dumping payloads.
func (m Message) String() string {
	if m.Keepalive {
		return "keepalive"
	}
	switch m.ID {
	case Have, Suggest, AllowedFast:
		return fmt.Sprintf("%v(%d)", m.ID, m.Index)
	case Request, Cancel, Reject:
		return fmt.Sprintf("%v(%d, %d, %d)", m.ID, m.Index, m.Begin, m.Length)
	case Piece:
		return fmt.Sprintf("piece(%d, %d, %d bytes)", m.Index, m.Begin, len(m.Payload))
	case Port:
		return fmt.Sprintf("port(%d)", m.Port)
	case Extended:
		return fmt.Sprintf("extended(%d, %d bytes)", m.ExtendedID, len(m.Payload))
	case Bitfield:
		return fmt.Sprintf("bitfield(%d bytes)", len(m.Payload))
	}
	if m.ID.Known() {
		return m.ID.String()
	}
	return fmt.Sprintf("%v(%d bytes)", m.ID, len(m.Payload))
}
