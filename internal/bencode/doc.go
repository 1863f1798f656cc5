// Package bencode encodes and decodes the BitTorrent serialisation format of
// BEP 3: integers (i42e), byte strings (4:spam), lists (l...e) and
// dictionaries (d...e).
//
// The Go mapping follows encoding/json where that makes sense:
//
//   - integers map to every int and uint kind (a value that does not fit the
//     target is an error, never silently truncated) and to bool, which is
//     written as i1e/i0e and read strictly from 0 or 1;
//   - byte strings map to string, []byte and byte arrays such as [20]byte (a
//     string whose length differs from the array's is an error);
//   - lists map to slices and (non-byte) arrays of matching length;
//   - dictionaries map to maps with string keys and to structs, whose keys
//     come from the `bencode:"key,omitempty"` tag, or the field name when the
//     tag has no name; `bencode:"-"` skips a field, and untagged embedded
//     structs are flattened into the outer dictionary (outer fields win);
//   - pointers are followed (and allocated when decoding), `any` receives the
//     generic form (int64, string, []any, map[string]any), RawMessage keeps a
//     value's exact bytes, and Marshaler/Unmarshaler let a type take over.
//
// Bencode has no null, so a nil pointer or nil interface in a struct field
// is always left out of the dictionary; anywhere else it is an error.
// omitempty also leaves out zero numbers, false, empty strings, slices and
// maps, and zero-valued arrays and structs.
//
// Encoding is canonical: dictionary keys are always sorted by their raw
// bytes, so encoding a decoded value reproduces a well-formed input exactly.
//
// Decoding is strict because the same bytes are hashed (the info hash) and
// parsed by other clients, so two parsers must never disagree on what a
// value is. It rejects integers with leading zeros, "-0", empty integers,
// string lengths with a sign or leading zeros, truncated input, trailing
// bytes after the top-level value, and duplicate dictionary keys. It does
// accept dictionary keys out of order, because real torrents in the wild
// contain unsorted dictionaries and refusing them would gain nothing: the
// info hash is taken over the original bytes either way. Every error names
// the byte offset where the problem lies.
//
// Hostile input cannot make the decoder use unbounded stack or memory: a
// Decoder enforces Limits on nesting depth, string length and the number of
// entries in one list or dictionary, and the package-level functions use
// DefaultLimits. Decoding works in a single pass over the input without
// per-byte allocations, so a multi-megabyte torrent decodes in linear time.
package bencode
