// Package terms holds the Floodgate terms of a torrent: the provider's key,
// its broker's URL and the service classes it sells, signed by the provider
// and carried in the top-level "floodgate" dictionary of the .torrent file
// (DESIGN §3). The dictionary sits outside "info", so attaching terms never
// changes the info hash, and a client that knows nothing of Floodgate reads
// the torrent as a plain one.
//
// The signature covers a domain-separation tag, the info hash and the
// canonical bencoding of every field but the signature itself, so terms can
// be neither edited nor moved to another torrent. Verify re-derives those
// bytes from the decoded values instead of hashing what arrived, and Decode
// refuses unknown keys and non-canonical encodings, so nothing can ride
// along unsigned and one set of terms has exactly one encoding.
//
// A valid signature proves that the terms are what the key in them signed;
// it does not prove whose key that is. Trust in the provider comes from
// where the torrent was obtained, or from a pinned key (VerifyProvider).
// Docs: the "Signed terms" section of docs/protocol.md.
package terms
