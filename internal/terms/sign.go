package terms

import (
	"crypto/sha1"
	"errors"
	"fmt"
	"slices"

	"github.com/floodgate-p2p/floodgate/internal/identity"
	"github.com/floodgate-p2p/floodgate/internal/metainfo"
)

// Sign returns a signed copy of t for the torrent with the given info hash.
// It sets Provider to key's public key, and Default to the first class when
// t names none; the result shares no memory with t. Invalid terms are
// refused with an error wrapping ErrInvalid.
func Sign(t Terms, infoHash metainfo.Hash, key *identity.PrivateKey) (Terms, error) {
	if key == nil {
		return Terms{}, errors.New("terms: Sign needs the provider's private key")
	}
	t.Classes = slices.Clone(t.Classes)
	t.Provider = key.Public()
	if t.Default == "" && len(t.Classes) > 0 {
		t.Default = t.Classes[0].Name
	}
	t.Signature = identity.Signature{}
	if err := t.Validate(); err != nil {
		return Terms{}, err
	}
	msg, err := t.signedBytes(infoHash)
	if err != nil {
		return Terms{}, err
	}
	t.Signature = key.Sign(msg)
	return t, nil
}

// Verify checks that the terms are valid and that t.Provider signed exactly
// these terms for the torrent with the given info hash. The signed message
// is rebuilt from t's fields, never taken from received bytes. Errors wrap
// ErrInvalid or ErrTampered.
func (t *Terms) Verify(infoHash metainfo.Hash) error {
	if err := t.Validate(); err != nil {
		return err
	}
	msg, err := t.signedBytes(infoHash)
	if err != nil {
		return err
	}
	if !t.Provider.Verify(msg, t.Signature) {
		return fmt.Errorf("%w: provider %s, info hash %s", ErrTampered, t.Provider, infoHash)
	}
	return nil
}

// VerifyProvider is Verify for a caller that knows which provider it trusts
// (a key pinned in its configuration or fetched from the provider): terms
// that verify under any other key fail with ErrUntrustedProvider, since
// anyone can sign terms with a key of their own.
func (t *Terms) VerifyProvider(infoHash metainfo.Hash, trusted identity.PublicKey) error {
	if err := t.Verify(infoHash); err != nil {
		return err
	}
	if t.Provider != trusted {
		return fmt.Errorf("%w: signed by %s, trusted provider is %s", ErrUntrustedProvider, t.Provider, trusted)
	}
	return nil
}

// FromMetaInfo returns the verified terms of a torrent, or nil and no error
// for a plain torrent without a "floodgate" dictionary (which Floodgate
// downloads for free). Terms that do not decode fail with ErrInvalid; terms
// that do not verify against mi.InfoHash fail with ErrTampered.
func FromMetaInfo(mi *metainfo.MetaInfo) (*Terms, error) {
	if mi == nil {
		return nil, errors.New("terms: FromMetaInfo(nil)")
	}
	if len(mi.Floodgate) == 0 {
		return nil, nil
	}
	t, err := Decode(mi.Floodgate)
	if err != nil {
		return nil, fmt.Errorf("torrent %s: %w", mi.InfoHash, err)
	}
	// Verify's errors already name the info hash.
	if err := t.Verify(mi.InfoHash); err != nil {
		return nil, err
	}
	return t, nil
}

// Attach puts t into mi as its "floodgate" dictionary, replacing any terms
// it had, so that mi.Encode writes them; the info dictionary, and with it
// the info hash, is untouched. It verifies t against mi's info hash first,
// so a provider never publishes terms its peers would refuse. mi must carry
// its info bytes (from metainfo.Build or metainfo.Parse).
func Attach(mi *metainfo.MetaInfo, t *Terms) error {
	if mi == nil || t == nil {
		return errors.New("terms: Attach needs a torrent and terms")
	}
	if len(mi.InfoBytes) == 0 || sha1.Sum(mi.InfoBytes) != mi.InfoHash {
		return errors.New("terms: Attach: the torrent's info bytes are missing or do not match its info hash")
	}
	if err := t.Verify(mi.InfoHash); err != nil {
		return fmt.Errorf("terms: Attach to torrent %s: %w", mi.InfoHash, err)
	}
	raw, err := t.Encode()
	if err != nil {
		return err
	}
	mi.Floodgate = raw
	return nil
}
