package wire

import "errors"

// The sentinel errors below tell the connection layer how to react. Every
// error the package returns for bad input wraps exactly one of them (use
// errors.Is), with the detail in the message. After any error from a Reader
// the byte stream can no longer be trusted to be in step, so the only safe
// reaction to all of them is to close the connection; docs/protocol.md says
// which ones also count against the peer.
var (
	// ErrBadProtocol means the remote side did not open with the BitTorrent
	// handshake (wrong protocol string length or protocol string). It is
	// typical of port scanners, encrypted (MSE) handshakes and other
	// protocols; it says nothing about a known peer's honesty.
	ErrBadProtocol = errors.New("wire: not a BitTorrent handshake")

	// ErrMalformed means a message violated the framing rules: a
	// fixed-size message with the wrong length, a variable-size message too
	// short for its fixed fields, or an undecodable extended handshake.
	ErrMalformed = errors.New("wire: malformed message")

	// ErrTooLarge means a length prefix exceeded the limit for its message
	// type. The payload has not been read, so nothing was allocated for it.
	ErrTooLarge = errors.New("wire: message too large")
)
