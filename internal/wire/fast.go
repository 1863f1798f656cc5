package wire

import (
	"crypto/sha1"
	"encoding/binary"
	"net/netip"
	"slices"
)

// AllowedFastSet returns the first k pieces of the canonical BEP 6
// allowed-fast set for a peer at ip on the torrent infoHash with
// numPieces pieces. Computing it from the peer's address, not choosing
// pieces freely, means a peer gains nothing by reconnecting, and both
// sides can tell which allowed_fast messages are genuine.
//
// BEP 6 defines the set for IPv4 only; for other addresses, and for
// numPieces or k not positive, the result is nil. k is capped at
// numPieces so the search always ends.
func AllowedFastSet(ip netip.Addr, infoHash [20]byte, numPieces, k int) []uint32 {
	ip = ip.Unmap()
	if !ip.Is4() || numPieces <= 0 || k <= 0 {
		return nil
	}
	k = min(k, numPieces)
	a4 := ip.As4()
	// The /24 mask makes one NATed household or small subnet share a set,
	// as BEP 6 intends.
	x := make([]byte, 0, 24)
	x = append(x, a4[0], a4[1], a4[2], 0)
	x = append(x, infoHash[:]...)
	set := make([]uint32, 0, k)
	for len(set) < k {
		sum := sha1.Sum(x)
		x = sum[:]
		for i := 0; i < 5 && len(set) < k; i++ {
			idx := binary.BigEndian.Uint32(x[i*4:]) % uint32(numPieces)
			if !slices.Contains(set, idx) {
				set = append(set, idx)
			}
		}
	}
	return set
}
