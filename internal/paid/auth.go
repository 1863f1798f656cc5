package paid

import (
	"crypto/rand"
	"fmt"

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
//   - both public keys, so a man in the middle cannot relay one peer's
//     proof to a third peer: the proof names the key it was made for.
func authMessage(infoHash metainfo.Hash, receiverNonce, senderNonce [32]byte, receiver, sender identity.PublicKey) []byte {
	b := make([]byte, 0, len(authTag)+20+4*32)
	b = append(b, authTag...)
	b = append(b, infoHash[:]...)
	b = append(b, receiverNonce[:]...)
	b = append(b, senderNonce[:]...)
	b = append(b, receiver[:]...)
	b = append(b, sender[:]...)
	return b
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
