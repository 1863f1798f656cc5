// Package wire encodes and decodes the BitTorrent peer wire protocol: the
// BEP 3 handshake and messages, the BEP 6 fast extension messages and the
// BEP 10 extension protocol framing with its handshake dictionary.
//
// The package is a pure codec. It knows nothing about pieces, sessions or
// payments: it turns bytes into Message values and back, enforces size
// limits before allocating, and reports bad input with errors that wrap
// ErrBadProtocol, ErrMalformed or ErrTooLarge. Blocking reads happen on the
// io.Reader the caller supplies, so cancellation and timeouts are the
// caller's (typically net.Conn deadlines driven by a context).
package wire

import (
	"bytes"
	"fmt"
	"io"
)

// Protocol is the protocol string of the BEP 3 handshake.
const Protocol = "BitTorrent protocol"

// HandshakeLen is the encoded size of a handshake: the length byte, the
// protocol string, 8 reserved bytes, the info hash and the peer ID.
const HandshakeLen = 1 + len(Protocol) + 8 + 20 + 20

// Reserved-bit positions we understand. The byte index and mask pairs come
// from BEP 10 (extension protocol) and BEP 6 (fast extension).
const (
	extensionByte = 5
	extensionMask = 0x10
	fastByte      = 7
	fastMask      = 0x04
)

// Handshake is the fixed 68-byte greeting each side sends first.
type Handshake struct {
	// Reserved carries capability bits; see SupportsExtensions and
	// SupportsFast. Bits we do not know must be preserved as zero on our
	// side and ignored on the peer's.
	Reserved [8]byte
	// InfoHash identifies the torrent (SHA-1 of the bencoded info dict).
	InfoHash [20]byte
	// PeerID is the sender's self-chosen identity on the swarm. It is not
	// authenticated; Floodgate authenticates peers in the extension
	// handshake instead.
	PeerID [20]byte
}

// NewHandshake returns the handshake Floodgate sends: the extension
// protocol (BEP 10) and fast extension (BEP 6) bits set, nothing else.
func NewHandshake(infoHash, peerID [20]byte) Handshake {
	h := Handshake{InfoHash: infoHash, PeerID: peerID}
	h.Reserved[extensionByte] |= extensionMask
	h.Reserved[fastByte] |= fastMask
	return h
}

// SupportsExtensions reports whether the sender advertises the BEP 10
// extension protocol, which Floodgate's payment extension rides on.
func (h Handshake) SupportsExtensions() bool {
	return h.Reserved[extensionByte]&extensionMask != 0
}

// SupportsFast reports whether the sender advertises the BEP 6 fast
// extension. The fast messages may only be used when both sides set it.
func (h Handshake) SupportsFast() bool {
	return h.Reserved[fastByte]&fastMask != 0
}

// AppendBinary appends the 68-byte encoding of h to b. It never fails; the
// error result satisfies encoding.BinaryAppender.
func (h Handshake) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, byte(len(Protocol)))
	b = append(b, Protocol...)
	b = append(b, h.Reserved[:]...)
	b = append(b, h.InfoHash[:]...)
	b = append(b, h.PeerID[:]...)
	return b, nil
}

// WriteHandshake writes h to w in one Write call, so that on a socket it
// leaves in a single segment.
func WriteHandshake(w io.Writer, h Handshake) error {
	var buf [HandshakeLen]byte
	b, _ := h.AppendBinary(buf[:0])
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("wire: write handshake: %w", err)
	}
	return nil
}

// ReadHandshake reads exactly one handshake from r and never more bytes
// than that, so the caller can hand the same r to NewReader afterwards.
//
// The protocol length byte is checked before anything else is read, so a
// peer speaking another protocol is refused after one byte instead of
// blocking until 67 more arrive. Wrong framing yields an error wrapping
// ErrBadProtocol; a stream that ends early yields one wrapping
// io.ErrUnexpectedEOF (or io.EOF when nothing at all arrived).
func ReadHandshake(r io.Reader) (Handshake, error) {
	var buf [HandshakeLen]byte
	if _, err := io.ReadFull(r, buf[:1]); err != nil {
		return Handshake{}, fmt.Errorf("wire: read handshake: %w", err)
	}
	if int(buf[0]) != len(Protocol) {
		return Handshake{}, fmt.Errorf("%w: protocol length %d, want %d", ErrBadProtocol, buf[0], len(Protocol))
	}
	if _, err := io.ReadFull(r, buf[1:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Handshake{}, fmt.Errorf("wire: read handshake: %w", err)
	}
	if !bytes.Equal(buf[1:1+len(Protocol)], []byte(Protocol)) {
		return Handshake{}, fmt.Errorf("%w: protocol string %q", ErrBadProtocol, buf[1:1+len(Protocol)])
	}
	var h Handshake
	off := 1 + len(Protocol)
	off += copy(h.Reserved[:], buf[off:])
	off += copy(h.InfoHash[:], buf[off:])
	copy(h.PeerID[:], buf[off:])
	return h, nil
}
