package paid

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/floodgate-p2p/floodgate/internal/engine"
	"github.com/floodgate-p2p/floodgate/internal/identity"
	"github.com/floodgate-p2p/floodgate/internal/metainfo"
)

// authTag separates peer-authentication signatures from every other
// signature made with the same key.
const authTag = "floodgate/peer-auth/v1\x00"

// authMessage is what a peer signs to prove, on this connection, that it
// holds the key of the certificate it showed. It binds:
//   - the info hash, so a proof cannot move to another swarm;
//   - the receiver's fresh nonce, so it cannot be replayed later;
//   - the sender's nonce, so both halves belong to one session;
//   - both public keys, so the proof names the key it was made for;
//   - the receiver's address as the sender sees it, so a peer in the
//     middle cannot relay one peer's proof to another (the proof names
//     the middle's address, not the receiver's). A sender that dialed
//     knows the receiver's listening address and signs IP and port; a
//     sender that accepted the connection sees the receiver's ephemeral
//     port, possibly rewritten by NAT, and signs the IP only.
func authMessage(infoHash metainfo.Hash, receiverNonce, senderNonce [32]byte, receiver, sender identity.PublicKey, receiverAddr netip.AddrPort, senderDialed bool) []byte {
	b := make([]byte, 0, len(authTag)+20+4*32+1+16+2)
	b = append(b, authTag...)
	b = append(b, infoHash[:]...)
	b = append(b, receiverNonce[:]...)
	b = append(b, senderNonce[:]...)
	b = append(b, receiver[:]...)
	b = append(b, sender[:]...)
	ip := receiverAddr.Addr().Unmap().As16()
	if senderDialed {
		b = append(b, 1)
		b = append(b, ip[:]...)
		b = binary.BigEndian.AppendUint16(b, receiverAddr.Port())
	} else {
		b = append(b, 0)
		b = append(b, ip[:]...)
	}
	return b
}

// ownAddrs are the addresses under which a sender may have reached us on
// connection p: our end of the connection, and (behind NAT) the public IPs
// the provider's tracker reported, with our listening port.
func ownAddrs(p engine.Peer, external []netip.Addr) []netip.AddrPort {
	local := p.LocalAddr()
	out := []netip.AddrPort{local}
	for _, ip := range external {
		out = append(out, netip.AddrPortFrom(ip.Unmap(), local.Port()))
	}
	return out
}

func newNonce() [32]byte {
	var n [32]byte
	if _, err := rand.Read(n[:]); err != nil {
		// crypto/rand does not fail on supported platforms; a zero nonce
		// would silently allow replays, so refuse to continue.
		panic(fmt.Sprintf("paid: crypto/rand: %v", err))
	}
	return n
}
