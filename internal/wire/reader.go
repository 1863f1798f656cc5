package wire

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// Default per-type payload limits. They are generous for honest peers and
// small enough that a hostile length prefix cannot make us allocate much.
const (
	// DefaultMaxBlock bounds a piece message's block. Honest peers send
	// the BlockSize we request; 128 KiB leaves room for clients that
	// serve larger requests without letting a peer push megabytes.
	DefaultMaxBlock = 128 << 10
	// DefaultMaxBitfield bounds a bitfield payload when the piece count is
	// not known: 1 MiB covers 8 Mi pieces, far beyond real torrents.
	DefaultMaxBitfield = 1 << 20
	// DefaultMaxExtended bounds an extended message body (after the
	// extended ID byte); BEP 9 metadata pieces are 16 KiB plus a small
	// dictionary, Floodgate messages far less.
	DefaultMaxExtended = 1 << 20
	// DefaultMaxUnknown bounds the body of messages with an unknown ID,
	// which we read only to skip them.
	DefaultMaxUnknown = BlockSize + 13
)

// DefaultBufferSize is the Reader's read-buffer size: several blocks, so
// that one read system call fetches many messages on a fast link.
const DefaultBufferSize = 64 << 10

// Limits bounds payload sizes per message type. Any field that is zero or
// negative takes its Default value, so the zero Limits is ready to use.
type Limits struct {
	// MaxBlock bounds the block of a piece message.
	MaxBlock int
	// MaxBitfield bounds a bitfield payload. Once the torrent's piece
	// count n is known, set it to (n+7)/8 so an oversized bitfield is
	// refused before it is read.
	MaxBitfield int
	// MaxExtended bounds an extended message body, not counting the
	// extended ID byte.
	MaxExtended int
	// MaxUnknown bounds the body of a message with an unknown ID, not
	// counting the ID byte.
	MaxUnknown int
}

func (l Limits) withDefaults() Limits {
	if l.MaxBlock <= 0 {
		l.MaxBlock = DefaultMaxBlock
	}
	if l.MaxBitfield <= 0 {
		l.MaxBitfield = DefaultMaxBitfield
	}
	if l.MaxExtended <= 0 {
		l.MaxExtended = DefaultMaxExtended
	}
	if l.MaxUnknown <= 0 {
		l.MaxUnknown = DefaultMaxUnknown
	}
	return l
}

// Reader decodes a stream of length-prefixed messages. It buffers its
// input, so once a Reader is made the underlying reader must not be read
// directly. A Reader is not safe for concurrent use; one goroutine per
// connection owns it.
//
// Errors are sticky: after the first error every call returns it again,
// because the stream position is then unknown.
type Reader struct {
	br     *bufio.Reader
	limits Limits
	scr    [12]byte // fixed fields, reused so decoding does not allocate
	err    error
}

// NewReader returns a Reader on r enforcing lim (zero fields take the
// defaults). If r is a *bufio.Reader of at least DefaultBufferSize it is
// used as is; that is how a caller that peeked at the stream hands it on.
func NewReader(r io.Reader, lim Limits) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, DefaultBufferSize), limits: lim.withDefaults()}
}

// Limits returns the limits in force, defaults filled in.
func (r *Reader) Limits() Limits { return r.limits }

// SetLimits replaces the limits for the following messages; zero fields
// take the defaults. The session calls it once the piece count is known
// (to tighten MaxBitfield) or after negotiating extension message sizes.
func (r *Reader) SetLimits(lim Limits) { r.limits = lim.withDefaults() }

// ReadMessage reads the next message, allocating a fresh Payload for the
// messages that carry one. It is ReadMessageInto(nil).
func (r *Reader) ReadMessage() (Message, error) {
	return r.ReadMessageInto(nil)
}

// ReadMessageInto reads the next message. A payload (piece block,
// bitfield, extended body, unknown body) is read into buf[:n] when
// cap(buf) >= n and into a new slice otherwise, so a caller that passes
// a recycled BlockSize buffer reads piece messages without allocating.
// Messages without a payload never touch buf. Either way Payload belongs
// to the caller afterwards.
//
// At a clean end of stream between messages it returns io.EOF itself. A
// stream cut inside a message yields an error wrapping
// io.ErrUnexpectedEOF; framing violations wrap ErrMalformed or
// ErrTooLarge. An unknown ID is not an error: the message comes back with
// its ID and raw body so the caller can ignore it.
func (r *Reader) ReadMessageInto(buf []byte) (Message, error) {
	if r.err != nil {
		return Message{}, r.err
	}
	m, err := r.read(buf)
	if err != nil {
		r.err = err
	}
	return m, err
}

func (r *Reader) read(buf []byte) (Message, error) {
	if _, err := io.ReadFull(r.br, r.scr[:4]); err != nil {
		if err == io.EOF {
			return Message{}, io.EOF
		}
		return Message{}, fmt.Errorf("wire: read length prefix: %w", err)
	}
	n := binary.BigEndian.Uint32(r.scr[:4])
	if n == 0 {
		return Message{Keepalive: true}, nil
	}
	b, err := r.br.ReadByte()
	if err != nil {
		return Message{}, fmt.Errorf("wire: read message id: %w", unexpected(err))
	}
	id := MessageID(b)
	body := n - 1 // bytes after the ID
	m := Message{ID: id}

	if want := fixedBodyLen(id); want >= 0 {
		if n != uint32(want) {
			return Message{}, fmt.Errorf("%w: %v message of length %d, want %d", ErrMalformed, id, n, want)
		}
		f := r.scr[:body]
		if _, err := io.ReadFull(r.br, f); err != nil {
			return Message{}, fmt.Errorf("wire: read %v: %w", id, unexpected(err))
		}
		switch id {
		case Have, Suggest, AllowedFast:
			m.Index = binary.BigEndian.Uint32(f)
		case Request, Cancel, Reject:
			m.Index = binary.BigEndian.Uint32(f)
			m.Begin = binary.BigEndian.Uint32(f[4:])
			m.Length = binary.BigEndian.Uint32(f[8:])
		case Port:
			m.Port = binary.BigEndian.Uint16(f)
		}
		return m, nil
	}

	var fixed uint32 // fixed fields between the ID and the payload
	var limit int
	switch id {
	case Piece:
		fixed, limit = 8, r.limits.MaxBlock
	case Extended:
		fixed, limit = 1, r.limits.MaxExtended
	case Bitfield:
		limit = r.limits.MaxBitfield
	default:
		limit = r.limits.MaxUnknown
	}
	if body < fixed {
		return Message{}, fmt.Errorf("%w: %v message of length %d, want at least %d", ErrMalformed, id, n, fixed+1)
	}
	plen := uint64(body - fixed)
	if plen > uint64(limit) {
		return Message{}, fmt.Errorf("%w: %v payload of %d bytes, limit %d", ErrTooLarge, id, plen, limit)
	}
	if fixed > 0 {
		f := r.scr[:fixed]
		if _, err := io.ReadFull(r.br, f); err != nil {
			return Message{}, fmt.Errorf("wire: read %v: %w", id, unexpected(err))
		}
		if id == Piece {
			m.Index = binary.BigEndian.Uint32(f)
			m.Begin = binary.BigEndian.Uint32(f[4:])
		} else {
			m.ExtendedID = f[0]
		}
	}
	var p []byte
	if uint64(cap(buf)) >= plen {
		p = buf[:plen]
	} else {
		p = make([]byte, plen)
	}
	if _, err := io.ReadFull(r.br, p); err != nil {
		return Message{}, fmt.Errorf("wire: read %v payload: %w", id, unexpected(err))
	}
	m.Payload = p
	return m, nil
}

// unexpected turns io.EOF into io.ErrUnexpectedEOF: inside a message a
// closed stream is always a truncation.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
