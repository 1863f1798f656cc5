package bencode

import (
	"bytes"
	"fmt"
	"math"
	"reflect"
	"strconv"
)

// Limits bound the resources a single decode may use, so that input from a
// stranger (a torrent file, a peer's extension message, a tracker reply)
// cannot exhaust the stack or memory. A zero field means "use the default".
type Limits struct {
	// MaxDepth is the deepest nesting of lists and dictionaries allowed;
	// the top-level container counts as depth 1. Default 64: real torrents
	// nest four or five levels deep.
	MaxDepth int
	// MaxStringLength is the longest byte string allowed. Default 64 MiB,
	// which fits the "pieces" string of any torrent a 32 MiB file limit
	// lets in.
	MaxStringLength int
	// MaxEntries is the most elements one list, or key/value pairs one
	// dictionary, may hold. Default 4,194,304: enough for the file list
	// and piece hashes of very large torrents, and a cap on how much
	// bookkeeping a small hostile input can force.
	MaxEntries int
}

// Default limits; see the Limits fields for the reasoning.
const (
	DefaultMaxDepth        = 64
	DefaultMaxStringLength = 64 << 20
	DefaultMaxEntries      = 4 << 20
)

// DefaultLimits returns the limits used by Unmarshal and Decode.
func DefaultLimits() Limits {
	return Limits{
		MaxDepth:        DefaultMaxDepth,
		MaxStringLength: DefaultMaxStringLength,
		MaxEntries:      DefaultMaxEntries,
	}
}

func (l Limits) withDefaults() Limits {
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	if l.MaxStringLength <= 0 {
		l.MaxStringLength = DefaultMaxStringLength
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultMaxEntries
	}
	return l
}

// Decoder decodes bencode under a set of Limits. The zero value uses
// DefaultLimits. A Decoder holds no state between calls and is safe for
// concurrent use.
type Decoder struct {
	Limits Limits
}

// NewDecoder returns a Decoder enforcing l; zero fields of l take their
// defaults.
func NewDecoder(l Limits) *Decoder {
	return &Decoder{Limits: l}
}

// Unmarshal decodes data, which must hold exactly one value, into the value
// v points to, using DefaultLimits.
func Unmarshal(data []byte, v any) error {
	var d Decoder
	return d.Unmarshal(data, v)
}

// Decode decodes data, which must hold exactly one value, into its generic
// form: int64, string, []any or map[string]any, using DefaultLimits.
func Decode(data []byte) (any, error) {
	var d Decoder
	return d.Decode(data)
}

// Unmarshal decodes data, which must hold exactly one value, into the value
// v points to.
func (d *Decoder) Unmarshal(data []byte, v any) error {
	n, err := d.UnmarshalPrefix(data, v)
	if err != nil {
		return err
	}
	if n != len(data) {
		return &SyntaxError{Offset: n, Msg: ErrTrailingData.Error(), Err: ErrTrailingData}
	}
	return nil
}

// UnmarshalPrefix decodes the one value at the start of data into the value
// v points to and returns how many bytes it used. It serves messages where
// a bencoded header is followed by raw payload (BEP 9 metadata pieces).
func (d *Decoder) UnmarshalPrefix(data []byte, v any) (int, error) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return 0, &InvalidUnmarshalError{Type: reflect.TypeOf(v)}
	}
	s := decodeState{data: data, lim: d.Limits.withDefaults()}
	if err := s.value(rv.Elem()); err != nil {
		return 0, err
	}
	return s.pos, nil
}

// Decode decodes data, which must hold exactly one value, into its generic
// form: int64, string, []any or map[string]any.
func (d *Decoder) Decode(data []byte) (any, error) {
	s := decodeState{data: data, lim: d.Limits.withDefaults()}
	x, err := s.generic()
	if err != nil {
		return nil, err
	}
	if s.pos != len(data) {
		return nil, &SyntaxError{Offset: s.pos, Msg: ErrTrailingData.Error(), Err: ErrTrailingData}
	}
	return x, nil
}

// Valid checks that data holds exactly one well-formed value within the
// limits, without building anything.
func (d *Decoder) Valid(data []byte) error {
	s := decodeState{data: data, lim: d.Limits.withDefaults()}
	if _, err := s.skip(); err != nil {
		return err
	}
	if s.pos != len(data) {
		return &SyntaxError{Offset: s.pos, Msg: ErrTrailingData.Error(), Err: ErrTrailingData}
	}
	return nil
}

// decodeState is one pass over one input.
type decodeState struct {
	data  []byte
	pos   int
	depth int
	lim   Limits
	// keys is a stack of the keys of the dictionaries currently open, used
	// to find duplicates; it is shared by all levels so that its storage is
	// reused rather than allocated per dictionary.
	keys [][]byte
}

func (s *decodeState) syntaxErr(off int, format string, args ...any) error {
	return &SyntaxError{Offset: off, Msg: fmt.Sprintf(format, args...)}
}

func (s *decodeState) limitErr(off int, format string, args ...any) error {
	return &SyntaxError{Offset: off, Msg: fmt.Sprintf(format, args...), Err: ErrLimitExceeded}
}

func (s *decodeState) unexpectedEnd() error {
	return s.syntaxErr(s.pos, "unexpected end of input")
}

// kindAt names the value starting at s.pos for error messages.
func (s *decodeState) kindAt() string {
	if s.pos >= len(s.data) {
		return "end of input"
	}
	switch c := s.data[s.pos]; {
	case c == 'i':
		return "integer"
	case c == 'l':
		return "list"
	case c == 'd':
		return "dict"
	case c >= '0' && c <= '9':
		return "string"
	default:
		return fmt.Sprintf("byte %q", c)
	}
}

// readInt parses "i<digits>e" at s.pos into a sign and a magnitude, which
// lets callers fit the full uint64 range as well as the int64 range.
func (s *decodeState) readInt() (neg bool, mag uint64, err error) {
	start := s.pos
	s.pos++ // 'i'
	if s.pos < len(s.data) && s.data[s.pos] == '-' {
		neg = true
		s.pos++
	}
	digits := s.pos
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		if c < '0' || c > '9' {
			break
		}
		d := uint64(c - '0')
		if mag > (math.MaxUint64-d)/10 {
			return false, 0, s.syntaxErr(start, "integer out of range")
		}
		mag = mag*10 + d
		s.pos++
	}
	if s.pos >= len(s.data) {
		return false, 0, s.unexpectedEnd()
	}
	if s.data[s.pos] != 'e' {
		return false, 0, s.syntaxErr(s.pos, "invalid byte %q in integer", s.data[s.pos])
	}
	n := s.pos - digits
	switch {
	case n == 0:
		return false, 0, s.syntaxErr(start, "empty integer")
	case n > 1 && s.data[digits] == '0':
		return false, 0, s.syntaxErr(start, "integer with leading zero")
	case neg && mag == 0:
		return false, 0, s.syntaxErr(start, "negative zero integer")
	}
	s.pos++ // 'e'
	return neg, mag, nil
}

// readInt64 parses an integer that must fit an int64.
func (s *decodeState) readInt64() (int64, error) {
	start := s.pos
	neg, mag, err := s.readInt()
	if err != nil {
		return 0, err
	}
	if neg {
		if mag > 1<<63 {
			return 0, s.syntaxErr(start, "integer out of int64 range")
		}
		return -int64(mag-1) - 1, nil
	}
	if mag > math.MaxInt64 {
		return 0, s.syntaxErr(start, "integer out of int64 range")
	}
	return int64(mag), nil
}

// readString parses "<len>:<bytes>" at s.pos and returns a slice of the
// input, without copying.
func (s *decodeState) readString() ([]byte, error) {
	start := s.pos
	var n uint64
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + uint64(c-'0')
		if n > uint64(s.lim.MaxStringLength) {
			return nil, s.limitErr(start, "string longer than the limit of %d bytes", s.lim.MaxStringLength)
		}
		s.pos++
	}
	if s.pos >= len(s.data) {
		return nil, s.unexpectedEnd()
	}
	if s.data[s.pos] != ':' {
		return nil, s.syntaxErr(s.pos, "invalid byte %q in string length", s.data[s.pos])
	}
	if s.pos-start > 1 && s.data[start] == '0' {
		return nil, s.syntaxErr(start, "string length with leading zero")
	}
	s.pos++ // ':'
	if n > uint64(len(s.data)-s.pos) {
		return nil, s.syntaxErr(start, "string of length %d runs past the end of input", n)
	}
	b := s.data[s.pos : s.pos+int(n)]
	s.pos += int(n)
	return b, nil
}

// enter and leave track nesting depth around lists and dictionaries.
func (s *decodeState) enter() error {
	s.depth++
	if s.depth > s.lim.MaxDepth {
		return s.limitErr(s.pos, "nesting deeper than the limit of %d", s.lim.MaxDepth)
	}
	return nil
}

func (s *decodeState) leave() { s.depth-- }

// list walks the list at s.pos, calling elem with s.pos at each element;
// elem must consume exactly that element.
func (s *decodeState) list(elem func(i int) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	s.pos++ // 'l'
	for i := 0; ; i++ {
		if s.pos >= len(s.data) {
			return s.unexpectedEnd()
		}
		if s.data[s.pos] == 'e' {
			s.pos++
			return nil
		}
		if i >= s.lim.MaxEntries {
			return s.limitErr(s.pos, "list longer than the limit of %d entries", s.lim.MaxEntries)
		}
		if err := elem(i); err != nil {
			return err
		}
	}
}

// dict walks the dictionary at s.pos, calling entry with each key and s.pos
// at its value; entry must consume exactly that value. It rejects duplicate
// keys. Sorted input (the normal case) costs one comparison per key; only a
// dictionary that turns out to be unsorted gets a set of its keys, so that
// a hostile unsorted dictionary cannot make duplicate checks quadratic.
func (s *decodeState) dict(entry func(key []byte, keyOff int) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	s.pos++ // 'd'
	base := len(s.keys)
	defer func() {
		clear(s.keys[base:])
		s.keys = s.keys[:base]
	}()
	var seen map[string]struct{}
	for i := 0; ; i++ {
		if s.pos >= len(s.data) {
			return s.unexpectedEnd()
		}
		c := s.data[s.pos]
		if c == 'e' {
			s.pos++
			return nil
		}
		if i >= s.lim.MaxEntries {
			return s.limitErr(s.pos, "dict larger than the limit of %d entries", s.lim.MaxEntries)
		}
		if c < '0' || c > '9' {
			return s.syntaxErr(s.pos, "dict key must be a string, found %s", s.kindAt())
		}
		keyOff := s.pos
		key, err := s.readString()
		if err != nil {
			return err
		}
		switch {
		case seen != nil:
			if _, dup := seen[string(key)]; dup {
				return s.dupErr(keyOff, key)
			}
			seen[string(key)] = struct{}{}
		case len(s.keys) == base || bytes.Compare(s.keys[len(s.keys)-1], key) < 0:
			s.keys = append(s.keys, key)
		default:
			seen = make(map[string]struct{}, 2*(len(s.keys)-base))
			for _, k := range s.keys[base:] {
				seen[string(k)] = struct{}{}
			}
			if _, dup := seen[string(key)]; dup {
				return s.dupErr(keyOff, key)
			}
			seen[string(key)] = struct{}{}
		}
		if s.pos >= len(s.data) {
			return s.unexpectedEnd()
		}
		if err := entry(key, keyOff); err != nil {
			return err
		}
	}
}

func (s *decodeState) dupErr(off int, key []byte) error {
	return &SyntaxError{Offset: off, Msg: fmt.Sprintf("duplicate dict key %q", key), Err: ErrDuplicateKey}
}

// skip checks the value at s.pos and returns its exact bytes.
func (s *decodeState) skip() ([]byte, error) {
	start := s.pos
	if s.pos >= len(s.data) {
		return nil, s.unexpectedEnd()
	}
	var err error
	switch c := s.data[s.pos]; {
	case c == 'i':
		_, _, err = s.readInt()
	case c >= '0' && c <= '9':
		_, err = s.readString()
	case c == 'l':
		err = s.list(func(int) error {
			_, err := s.skip()
			return err
		})
	case c == 'd':
		err = s.dict(func([]byte, int) error {
			_, err := s.skip()
			return err
		})
	default:
		err = s.syntaxErr(s.pos, "invalid byte %q at start of value", c)
	}
	if err != nil {
		return nil, err
	}
	return s.data[start:s.pos], nil
}

// generic decodes the value at s.pos into int64, string, []any or
// map[string]any.
func (s *decodeState) generic() (any, error) {
	if s.pos >= len(s.data) {
		return nil, s.unexpectedEnd()
	}
	switch c := s.data[s.pos]; {
	case c == 'i':
		return s.readInt64()
	case c >= '0' && c <= '9':
		b, err := s.readString()
		if err != nil {
			return nil, err
		}
		return string(b), nil
	case c == 'l':
		l := []any{}
		err := s.list(func(int) error {
			x, err := s.generic()
			l = append(l, x)
			return err
		})
		if err != nil {
			return nil, err
		}
		return l, nil
	case c == 'd':
		m := map[string]any{}
		err := s.dict(func(key []byte, _ int) error {
			x, err := s.generic()
			m[string(key)] = x
			return err
		})
		if err != nil {
			return nil, err
		}
		return m, nil
	default:
		return nil, s.syntaxErr(s.pos, "invalid byte %q at start of value", c)
	}
}

var unmarshalerType = reflect.TypeFor[Unmarshaler]()

// value decodes the value at s.pos into v, which must be settable.
func (s *decodeState) value(v reflect.Value) error {
	if s.pos >= len(s.data) {
		return s.unexpectedEnd()
	}
	// Follow pointers, allocating as needed, and hand over to an
	// Unmarshaler at whichever level implements it.
	for {
		if v.CanAddr() && v.Kind() != reflect.Pointer && reflect.PointerTo(v.Type()).Implements(unmarshalerType) {
			return s.callUnmarshaler(v.Addr().Interface().(Unmarshaler))
		}
		if v.Kind() != reflect.Pointer {
			break
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		v = v.Elem()
	}
	if v.Kind() == reflect.Interface {
		if v.NumMethod() != 0 {
			return &UnsupportedTypeError{Type: v.Type()}
		}
		x, err := s.generic()
		if err != nil {
			return err
		}
		v.Set(reflect.ValueOf(x))
		return nil
	}
	switch c := s.data[s.pos]; {
	case c == 'i':
		return s.intValue(v)
	case c >= '0' && c <= '9':
		return s.stringValue(v)
	case c == 'l':
		return s.listValue(v)
	case c == 'd':
		return s.dictValue(v)
	default:
		return s.syntaxErr(s.pos, "invalid byte %q at start of value", c)
	}
}

func (s *decodeState) callUnmarshaler(u Unmarshaler) error {
	start := s.pos
	raw, err := s.skip()
	if err != nil {
		return err
	}
	if err := u.UnmarshalBencode(raw); err != nil {
		return fmt.Errorf("bencode: value at offset %d: %w", start, err)
	}
	return nil
}

func (s *decodeState) typeErr(off int, what string, t reflect.Type) error {
	return &UnmarshalTypeError{Value: what, Type: t, Offset: off}
}

func (s *decodeState) intValue(v reflect.Value) error {
	start := s.pos
	neg, mag, err := s.readInt()
	if err != nil {
		return err
	}
	text := func() string {
		if neg {
			return "integer -" + strconv.FormatUint(mag, 10)
		}
		return "integer " + strconv.FormatUint(mag, 10)
	}
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var n int64
		switch {
		case !neg && mag <= math.MaxInt64:
			n = int64(mag)
		case neg && mag <= 1<<63:
			n = -int64(mag-1) - 1
		default:
			return s.typeErr(start, text(), v.Type())
		}
		if v.OverflowInt(n) {
			return s.typeErr(start, text(), v.Type())
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if neg || v.OverflowUint(mag) {
			return s.typeErr(start, text(), v.Type())
		}
		v.SetUint(mag)
	case reflect.Bool:
		if neg || mag > 1 {
			return s.typeErr(start, text(), v.Type())
		}
		v.SetBool(mag == 1)
	default:
		return s.typeErr(start, "integer", v.Type())
	}
	return nil
}

func (s *decodeState) stringValue(v reflect.Value) error {
	start := s.pos
	b, err := s.readString()
	if err != nil {
		return err
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(string(b))
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.Uint8 {
			return s.typeErr(start, "string", v.Type())
		}
		v.SetBytes(append([]byte{}, b...))
	case reflect.Array:
		if v.Type().Elem().Kind() != reflect.Uint8 {
			return s.typeErr(start, "string", v.Type())
		}
		if len(b) != v.Len() {
			return s.typeErr(start, fmt.Sprintf("string of length %d", len(b)), v.Type())
		}
		reflect.Copy(v, reflect.ValueOf(b))
	default:
		return s.typeErr(start, "string", v.Type())
	}
	return nil
}

func (s *decodeState) listValue(v reflect.Value) error {
	start := s.pos
	switch v.Kind() {
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return s.typeErr(start, "list", v.Type())
		}
		v.SetLen(0)
		err := s.list(func(i int) error {
			if i >= v.Cap() {
				v.Grow(1)
			}
			v.SetLen(i + 1)
			e := v.Index(i)
			e.SetZero()
			if err := s.value(e); err != nil {
				return withField(err, "["+strconv.Itoa(i)+"]")
			}
			return nil
		})
		if err != nil {
			return err
		}
		if v.IsNil() {
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
		}
		return nil
	case reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return s.typeErr(start, "list", v.Type())
		}
		n := 0
		err := s.list(func(i int) error {
			if i >= v.Len() {
				return s.typeErr(start, "list longer than "+strconv.Itoa(v.Len()), v.Type())
			}
			n++
			if err := s.value(v.Index(i)); err != nil {
				return withField(err, "["+strconv.Itoa(i)+"]")
			}
			return nil
		})
		if err != nil {
			return err
		}
		if n != v.Len() {
			return s.typeErr(start, "list of length "+strconv.Itoa(n), v.Type())
		}
		return nil
	default:
		return s.typeErr(start, "list", v.Type())
	}
}

func (s *decodeState) dictValue(v reflect.Value) error {
	start := s.pos
	switch v.Kind() {
	case reflect.Map:
		t := v.Type()
		if t.Key().Kind() != reflect.String {
			return &UnsupportedTypeError{Type: t}
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(t))
		}
		elem := reflect.New(t.Elem()).Elem()
		return s.dict(func(key []byte, _ int) error {
			elem.SetZero()
			if err := s.value(elem); err != nil {
				return withField(err, string(key))
			}
			v.SetMapIndex(reflect.ValueOf(string(key)).Convert(t.Key()), elem)
			return nil
		})
	case reflect.Struct:
		si := cachedStructInfo(v.Type())
		return s.dict(func(key []byte, _ int) error {
			i, ok := si.byName[string(key)]
			if !ok {
				_, err := s.skip()
				return err
			}
			f := &si.fields[i]
			if err := s.value(v.FieldByIndex(f.index)); err != nil {
				return withField(err, f.name)
			}
			return nil
		})
	default:
		return s.typeErr(start, "dict", v.Type())
	}
}
