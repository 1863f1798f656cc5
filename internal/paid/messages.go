// Package paid implements the Floodgate extension (docs/protocol.md, "The
// Floodgate extension"): peers authenticate each other with their
// provider certificates, downloaders show broker vouchers for payment
// channels and pay for every verified piece with hash-chain preimages,
// and uploaders serve each account only within its credit window.
//
// A Session is the engine.Payments plug-in of one torrent in one peer; it
// is both the paying downloader and the paid uploader.
package paid

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"github.com/floodgate-p2p/floodgate/internal/bencode"
)

// Keys of our BEP 10 handshake additions.
const (
	hsCert  = "fg_cert"  // the sender's provider certificate (binary form)
	hsNonce = "fg_nonce" // 32 fresh random bytes
	hsClass = "fg_class" // the service class the sender buys with
)

// MaxMessageSize bounds one Floodgate extension message. The largest,
// "channel", carries one voucher of a few hundred bytes.
const MaxMessageSize = 4 << 10

// Message types ("t").
const (
	typeAuth    = "auth"
	typeChannel = "channel"
	typePay     = "pay"
	typeInvoice = "invoice"
	typeRefuse  = "refuse"
	typeFailed  = "failed"
	typeClosed  = "closed"
)

// message is the union of every Floodgate extension message; t says which
// fields matter.
type message struct {
	Type string `bencode:"t"`
	// auth: the sender's signature binding both nonces, both keys and the
	// info hash.
	Sig []byte `bencode:"sig,omitempty"`
	// channel: the broker-signed voucher (identity.Voucher binary form).
	Voucher []byte `bencode:"v,omitempty"`
	// pay: channel id, chain index and the preimage at that index.
	// closed: the channel the sender (its payee) closed, and the index
	// the broker redeemed it to: later payments on it were not counted.
	Channel  string `bencode:"ch,omitempty"`
	Index    int64  `bencode:"i,omitempty"`
	Preimage []byte `bencode:"p,omitempty"`
	// invoice: what the uploader counts as owed and as paid, in units.
	Owed int64 `bencode:"owed,omitempty"`
	Paid int64 `bencode:"paid,omitempty"`
	// refuse: a machine-readable code and a human-readable reason.
	Code   string `bencode:"code,omitempty"`
	Reason string `bencode:"reason,omitempty"`
	// failed: a piece the receiver sent bytes of failed its hash; Bytes is
	// how many of them came from the receiver (they will not be paid).
	Piece int64 `bencode:"piece,omitempty"`
	Bytes int64 `bencode:"bytes,omitempty"`
}

// maxFailedBytes bounds the bytes one "failed" message may name: a piece
// is at most 64 MiB (metainfo.MaxPieceLength).
const maxFailedBytes = 64 << 20

// maxChannelID bounds a channel id in a closed message, and in a pay
// message read by hand (the broker's are 32 hex digits).
const maxChannelID = 64

// ErrBadMessage is wrapped by every decoding failure; the engine closes the
// connection on it.
var ErrBadMessage = errors.New("paid: bad floodgate message")

var messageLimits = bencode.Limits{MaxDepth: 2, MaxStringLength: MaxMessageSize, MaxEntries: 16}

// decodeMessage parses and validates one extension message.
func decodeMessage(b []byte) (message, error) {
	if len(b) > MaxMessageSize {
		return message{}, fmt.Errorf("%w: %d bytes, limit %d", ErrBadMessage, len(b), MaxMessageSize)
	}
	if pay, ok := decodePay(b); ok {
		return pay, nil
	}
	return decodeAny(b)
}

// decodeAny parses and validates a message of any type with the general
// decoder.
func decodeAny(b []byte) (message, error) {
	var m message
	if err := bencode.NewDecoder(messageLimits).Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%w: %w", ErrBadMessage, err)
	}
	switch m.Type {
	case typeAuth:
		if len(m.Sig) != 64 {
			return m, fmt.Errorf("%w: auth signature of %d bytes", ErrBadMessage, len(m.Sig))
		}
	case typeChannel:
		if len(m.Voucher) == 0 {
			return m, fmt.Errorf("%w: channel without voucher", ErrBadMessage)
		}
	case typePay:
		if m.Channel == "" || m.Index <= 0 || len(m.Preimage) != 32 {
			return m, fmt.Errorf("%w: pay needs a channel, a positive index and a 32-byte preimage", ErrBadMessage)
		}
	case typeInvoice:
		if m.Owed < 0 || m.Paid < 0 {
			return m, fmt.Errorf("%w: negative invoice", ErrBadMessage)
		}
	case typeRefuse:
		if len(m.Code) > 64 || len(m.Reason) > 512 {
			return m, fmt.Errorf("%w: refuse text too long", ErrBadMessage)
		}
	case typeFailed:
		if m.Piece < 0 || m.Bytes <= 0 || m.Bytes > maxFailedBytes {
			return m, fmt.Errorf("%w: failed needs a piece and 1..%d bytes", ErrBadMessage, maxFailedBytes)
		}
	case typeClosed:
		if m.Channel == "" || len(m.Channel) > maxChannelID || m.Index < 0 {
			return m, fmt.Errorf("%w: closed needs a channel and an index of at least 0", ErrBadMessage)
		}
	default:
		// Unknown types are refused rather than ignored: both sides speak
		// the same version of a closed protocol, and anything else is
		// probing.
		return m, fmt.Errorf("%w: unknown type %q", ErrBadMessage, m.Type)
	}
	return m, nil
}

func (m message) encode() []byte {
	if m.payOnly() {
		return m.appendPay(make([]byte, 0, payOverhead+len(m.Channel)+len(m.Preimage)))
	}
	b, err := bencode.Marshal(m)
	if err != nil {
		// Every field is a string or an integer: encoding cannot fail.
		panic(fmt.Sprintf("paid: encoding %s message: %v", m.Type, err))
	}
	return b
}

// Payments are by far the most frequent message (one per payee and batch
// of verified pieces), and the reflective codec took most of the cost of
// sending and receiving one. So a pay message is written by hand, and one
// in exactly that form is read by hand; anything else, valid or not, goes
// through the general decoder. Both give what bencode.Marshal and the
// general decoder give (FuzzPayCodec).

// payOverhead is the usual room a pay message's encoding needs besides its
// channel id and preimage: keys, type and three numbers.
const payOverhead = 64

// payOnly reports whether m is a pay message with a channel, a positive
// index and a preimage, and no other field set: appendPay writes only
// those.
func (m message) payOnly() bool {
	return m.Type == typePay && m.Channel != "" && m.Index > 0 && len(m.Preimage) > 0 &&
		m.Sig == nil && m.Voucher == nil && m.Owed == 0 && m.Paid == 0 &&
		m.Code == "" && m.Reason == "" && m.Piece == 0 && m.Bytes == 0
}

// appendPay appends the bencoding of a pay message with a channel, a
// positive index and a preimage: its keys in order, and no other field (a
// pay message has none).
func (m message) appendPay(b []byte) []byte {
	b = append(b, "d2:ch"...)
	b = strconv.AppendInt(b, int64(len(m.Channel)), 10)
	b = append(b, ':')
	b = append(b, m.Channel...)
	b = append(b, "1:ii"...)
	b = strconv.AppendInt(b, m.Index, 10)
	b = append(b, "e1:p"...)
	b = strconv.AppendInt(b, int64(len(m.Preimage)), 10)
	b = append(b, ':')
	b = append(b, m.Preimage...)
	return append(b, "1:t3:paye"...)
}

// decodePay reads a valid pay message in exactly appendPay's form: a
// channel id of 1 to 64 bytes, a positive index without leading zeros and
// a 32-byte preimage. ok is false for anything else.
func decodePay(b []byte) (m message, ok bool) {
	rest, ok := bytes.CutPrefix(b, []byte("d2:ch"))
	if !ok {
		return m, false
	}
	ch, rest, ok := cutString(rest, maxChannelID)
	if !ok || len(ch) == 0 {
		return m, false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte("1:ii")); !ok {
		return m, false
	}
	end := bytes.IndexByte(rest, 'e')
	if end < 1 || end > 18 || rest[0] < '1' || rest[0] > '9' {
		return m, false // 18 digits cannot overflow an int64
	}
	var index int64
	for _, c := range rest[:end] {
		if c < '0' || c > '9' {
			return m, false
		}
		index = index*10 + int64(c-'0')
	}
	if rest, ok = bytes.CutPrefix(rest[end+1:], []byte("1:p32:")); !ok || len(rest) < 32 {
		return m, false
	}
	preimage := rest[:32:32]
	if !bytes.Equal(rest[32:], []byte("1:t3:paye")) {
		return m, false
	}
	return message{Type: typePay, Channel: string(ch), Index: index, Preimage: bytes.Clone(preimage)}, true
}

// cutString reads a bencoded string of at most limit bytes (a length
// without leading zeros, a colon, the bytes) off the front of b.
func cutString(b []byte, limit int) (s, rest []byte, ok bool) {
	colon := bytes.IndexByte(b, ':')
	if colon < 1 || colon > 3 || (b[0] == '0' && colon > 1) {
		return nil, nil, false
	}
	n := 0
	for _, c := range b[:colon] {
		if c < '0' || c > '9' {
			return nil, nil, false
		}
		n = n*10 + int(c-'0')
	}
	if n > limit || len(b)-colon-1 < n {
		return nil, nil, false
	}
	return b[colon+1 : colon+1+n], b[colon+1+n:], true
}
