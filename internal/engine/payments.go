package engine

import (
	"net/netip"

	"github.com/floodgate-p2p/floodgate/internal/bencode"
	"github.com/floodgate-p2p/floodgate/internal/wire"
)

// ExtensionName is the BEP 10 name under which Floodgate's payment
// messages ride (docs/protocol.md, "The Floodgate extension").
const ExtensionName = "floodgate"

// extensionLocalID is the extended message ID we ask peers to use when they
// send us Floodgate messages.
const extensionLocalID = 1

// Peer is what a payment plug-in sees of one connection. Its methods are
// safe to call from any goroutine, including from inside Payments calls.
type Peer interface {
	// ConnID identifies the connection within its torrent.
	ConnID() uint64
	// Addr is the peer's address.
	Addr() netip.AddrPort
	// LocalAddr is our end of the connection.
	LocalAddr() netip.AddrPort
	// Outgoing reports whether we dialed the peer (else it dialed us).
	Outgoing() bool
	// SendExtension sends payload as a Floodgate extension message; it
	// reports false when the peer did not advertise the extension.
	SendExtension(payload []byte) bool
	// Close disconnects the peer.
	Close()
	// Wake tells the uploader that the peer may be served again (it paid).
	Wake()
	// Interested reports whether the peer wants pieces from us. A
	// downloader that finished says "not interested" to everyone right
	// after paying for its last pieces, so it has nothing left to pay for.
	// (Its piece count is no guide: HAVE messages are not sent to peers
	// that already have the piece.)
	Interested() bool
}

// Verdict is a payment plug-in's answer to "may this peer be served?".
type Verdict int

const (
	// Serve the block now.
	Serve Verdict = iota
	// Hold the peer's requests until it pays (the plug-in calls Wake).
	Hold
	// Refuse the peer: reject its requests and choke it.
	Refuse
)

// Contribution is how many bytes of a verified piece one peer sent.
type Contribution struct {
	Peer  Peer
	Bytes int
}

// Payments plugs a payment protocol into a torrent session, in the way
// syncthing's protocol layer calls its model: the engine keeps framing,
// piece flow and scheduling; the plug-in decides who pays whom.
//
// The engine calls every method except Uploaded with the torrent's lock
// held, so implementations must not block (broker calls belong on their
// own goroutines) and must not call back into the Torrent.
type Payments interface {
	// HandshakeFields returns extra keys for our BEP 10 handshake to p.
	HandshakeFields(p Peer) map[string]bencode.RawMessage
	// PeerHandshake receives p's BEP 10 handshake; supported says whether
	// p advertised the Floodgate extension. An error closes the connection.
	PeerHandshake(p Peer, hs *wire.ExtendedHandshake, supported bool) error
	// Message handles one Floodgate extension message from p. An error
	// closes the connection.
	Message(p Peer, payload []byte) error
	// Refuses is asked when p requests a block: true rejects the request
	// (p is not to be served at all), false queues it. Whether a queued
	// block is sent is Charge's to say.
	Refuses(p Peer) bool
	// Serve is asked for a peer held since its last Charge was refused:
	// Serve means a block of n bytes may go to it now, Hold that it
	// waits on, Refuse that it is not to be served at all.
	Serve(p Peer, n int) Verdict
	// MayRequest says whether we may ask p for blocks now: a paid uploader
	// serves only buyers whose payment channel it has seen, and blocks
	// asked of it meanwhile would sit in its queue while the pieces they
	// belong to cannot complete (and so cannot be paid for elsewhere).
	// It is asked only for peers that speak BEP 10; the engine re-asks
	// every second until the answer is yes, which it keeps for the
	// connection.
	MayRequest(p Peer) bool
	// NotInterested is called right before we tell p that we want
	// nothing more from it, after which p, as an uploader, stops waiting
	// for our payments: a plug-in that defers payments pays p now. The
	// torrent's lock is held.
	NotInterested(p Peer)
	// LostInterest reports that p told us it wants nothing more from us
	// (it finished, or we have nothing it lacks), so it will send no more
	// payments it does not already owe. The torrent's lock is held.
	LostInterest(p Peer)
	// Charge is asked right before a block of n bytes is handed to p's
	// writer: it records the block's value against p (so approvals cannot
	// outrun the credit window while blocks sit in the writer) and
	// reports false when p may not have it now, in which case the block
	// goes back to the queue and p is held until it pays.
	Charge(p Peer, n int) bool
	// Uploaded reports n bytes of payload sent to p. It is called from
	// the connection's writer without the torrent lock.
	Uploaded(p Peer, n int)
	// Banned reports that p was disconnected for good for misbehaviour
	// (e.g. data that failed its hash), so the plug-in can refuse its
	// identity too: a peer ID is chosen freely, an account is not.
	Banned(p Peer, reason string)
	// Verified reports a piece that passed its hash check and was
	// written, and who sent its bytes (pay-after-verify). It is called
	// without the torrent's lock (pieces verify concurrently), before
	// the piece is announced to anyone.
	Verified(piece int, from []Contribution)
	// Failed reports a piece that failed its hash check and who sent its
	// bytes; they are not paid for, and the piece is fetched again.
	Failed(piece int, from []Contribution)
	// Closed reports that p's connection ended.
	Closed(p Peer)
}

// ConnID implements Peer.
func (pc *peerConn) ConnID() uint64 { return pc.id }

// Addr implements Peer.
func (pc *peerConn) Addr() netip.AddrPort { return pc.addr }

// LocalAddr implements Peer.
func (pc *peerConn) LocalAddr() netip.AddrPort {
	ap, _ := netip.ParseAddrPort(pc.nc.LocalAddr().String())
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Outgoing implements Peer.
func (pc *peerConn) Outgoing() bool { return pc.out }

// SendExtension implements Peer.
func (pc *peerConn) SendExtension(payload []byte) bool {
	id := uint8(pc.fgID.Load())
	if id == 0 {
		return false
	}
	pc.send(wire.NewExtended(id, payload))
	return true
}

// Close implements Peer.
func (pc *peerConn) Close() { pc.nc.Close() }

// Wake implements Peer.
func (pc *peerConn) Wake() {
	pc.payHeld.Store(false)
	pc.t.writerFreed(pc)
}

// Interested implements Peer.
func (pc *peerConn) Interested() bool { return pc.interested.Load() }
