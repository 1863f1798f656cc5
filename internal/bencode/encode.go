package bencode

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
)

// maxEncodeDepth stops Marshal on pointer cycles and absurdly deep values
// with an error instead of a stack overflow. It is far above the decoder's
// default depth because encoding only ever handles our own values.
const maxEncodeDepth = 10000

// Marshal returns the bencoding of v. Dictionary keys are written in sorted
// (raw byte) order, so equal values always encode to equal bytes.
func Marshal(v any) ([]byte, error) {
	e := encodeState{buf: make([]byte, 0, 256)}
	if err := e.value(reflect.ValueOf(v)); err != nil {
		return nil, err
	}
	return e.buf, nil
}

// AppendMarshal appends the bencoding of v to dst, which lets hot paths
// (wire messages) reuse a buffer.
func AppendMarshal(dst []byte, v any) ([]byte, error) {
	e := encodeState{buf: dst}
	if err := e.value(reflect.ValueOf(v)); err != nil {
		return dst, err
	}
	return e.buf, nil
}

type encodeState struct {
	buf   []byte
	depth int
}

var marshalerType = reflect.TypeFor[Marshaler]()

func (e *encodeState) value(v reflect.Value) error {
	if !v.IsValid() {
		return &UnsupportedValueError{Type: reflect.TypeFor[any](), Msg: "nil value (bencode has no null)"}
	}
	e.depth++
	defer func() { e.depth-- }()
	if e.depth > maxEncodeDepth {
		return &UnsupportedValueError{Type: v.Type(), Msg: "value nested too deeply (pointer cycle?)"}
	}
	t := v.Type()
	if t.Implements(marshalerType) {
		if (v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface) && v.IsNil() {
			return &UnsupportedValueError{Type: t, Msg: "nil Marshaler"}
		}
		return e.marshaler(v.Interface().(Marshaler), t)
	}
	if v.Kind() != reflect.Pointer && v.CanAddr() && reflect.PointerTo(t).Implements(marshalerType) {
		return e.marshaler(v.Addr().Interface().(Marshaler), t)
	}
	switch v.Kind() {
	case reflect.Bool:
		if v.Bool() {
			e.buf = append(e.buf, "i1e"...)
		} else {
			e.buf = append(e.buf, "i0e"...)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		e.buf = append(e.buf, 'i')
		e.buf = strconv.AppendInt(e.buf, v.Int(), 10)
		e.buf = append(e.buf, 'e')
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		e.buf = append(e.buf, 'i')
		e.buf = strconv.AppendUint(e.buf, v.Uint(), 10)
		e.buf = append(e.buf, 'e')
	case reflect.String:
		e.str(v.String())
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			e.bytes(v.Bytes())
			return nil
		}
		return e.list(v)
	case reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			e.buf = strconv.AppendInt(e.buf, int64(v.Len()), 10)
			e.buf = append(e.buf, ':')
			for i := 0; i < v.Len(); i++ {
				e.buf = append(e.buf, byte(v.Index(i).Uint()))
			}
			return nil
		}
		return e.list(v)
	case reflect.Map:
		return e.mapValue(v)
	case reflect.Struct:
		return e.structValue(v)
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return &UnsupportedValueError{Type: t, Msg: "nil (bencode has no null)"}
		}
		return e.value(v.Elem())
	default:
		return &UnsupportedTypeError{Type: t}
	}
	return nil
}

func (e *encodeState) marshaler(m Marshaler, t reflect.Type) error {
	b, err := m.MarshalBencode()
	if err != nil {
		return fmt.Errorf("bencode: MarshalBencode of %s: %w", t, err)
	}
	// Check the output so that a faulty Marshaler cannot smuggle broken or
	// concatenated values into an otherwise valid document.
	var d Decoder
	if err := d.Valid(b); err != nil {
		return fmt.Errorf("bencode: MarshalBencode of %s returned invalid bencode: %w", t, err)
	}
	e.buf = append(e.buf, b...)
	return nil
}

func (e *encodeState) str(s string) {
	e.buf = strconv.AppendInt(e.buf, int64(len(s)), 10)
	e.buf = append(e.buf, ':')
	e.buf = append(e.buf, s...)
}

func (e *encodeState) bytes(b []byte) {
	e.buf = strconv.AppendInt(e.buf, int64(len(b)), 10)
	e.buf = append(e.buf, ':')
	e.buf = append(e.buf, b...)
}

func (e *encodeState) list(v reflect.Value) error {
	e.buf = append(e.buf, 'l')
	for i := 0; i < v.Len(); i++ {
		if err := e.value(v.Index(i)); err != nil {
			return err
		}
	}
	e.buf = append(e.buf, 'e')
	return nil
}

func (e *encodeState) mapValue(v reflect.Value) error {
	t := v.Type()
	if t.Key().Kind() != reflect.String {
		return &UnsupportedTypeError{Type: t}
	}
	keys := make([]string, 0, v.Len())
	vals := make(map[string]reflect.Value, v.Len())
	iter := v.MapRange()
	for iter.Next() {
		k := iter.Key().String()
		keys = append(keys, k)
		vals[k] = iter.Value()
	}
	slices.Sort(keys)
	e.buf = append(e.buf, 'd')
	for _, k := range keys {
		e.str(k)
		if err := e.value(vals[k]); err != nil {
			return err
		}
	}
	e.buf = append(e.buf, 'e')
	return nil
}

func (e *encodeState) structValue(v reflect.Value) error {
	si := cachedStructInfo(v.Type())
	e.buf = append(e.buf, 'd')
	for i := range si.fields {
		f := &si.fields[i]
		fv := v.FieldByIndex(f.index)
		if isNil(fv) || (f.omitEmpty && isEmpty(fv)) {
			continue
		}
		e.str(f.name)
		if err := e.value(fv); err != nil {
			return err
		}
	}
	e.buf = append(e.buf, 'e')
	return nil
}

func isNil(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		return v.IsNil()
	}
	return false
}

func isEmpty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String, reflect.Slice, reflect.Map:
		return v.Len() == 0
	case reflect.Pointer, reflect.Interface:
		return v.IsNil()
	default:
		return v.IsZero()
	}
}
