package bencode

import "errors"

// Marshaler is implemented by types that write their own bencode form.
// MarshalBencode must return exactly one well-formed value; Marshal checks
// this, so a buggy implementation cannot corrupt the surrounding output.
type Marshaler interface {
	MarshalBencode() ([]byte, error)
}

// Unmarshaler is implemented by types that read their own bencode form.
// UnmarshalBencode receives the exact bytes of one value, already checked
// for syntax and limits. It must copy the bytes if it keeps them.
type Unmarshaler interface {
	UnmarshalBencode(data []byte) error
}

// RawMessage is one bencoded value kept as its exact bytes. Decoding into a
// RawMessage copies the value's bytes untouched (key order included), and
// encoding one writes them back verbatim; this is what keeps an info
// dictionary, and with it the info hash, byte-exact across a round trip.
type RawMessage []byte

// MarshalBencode returns m itself. An empty RawMessage is an error, since it
// is not a value; use omitempty to leave an absent one out of a struct.
func (m RawMessage) MarshalBencode() ([]byte, error) {
	if len(m) == 0 {
		return nil, errors.New("bencode: empty RawMessage")
	}
	return m, nil
}

// UnmarshalBencode stores a copy of data in m.
func (m *RawMessage) UnmarshalBencode(data []byte) error {
	if m == nil {
		return errors.New("bencode: UnmarshalBencode on nil *RawMessage")
	}
	*m = append((*m)[:0:0], data...)
	return nil
}
