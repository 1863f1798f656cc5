package bencode

import (
	"errors"
	"fmt"
	"reflect"
)

// ErrLimitExceeded is wrapped by a SyntaxError when the input breaks one of
// the decoder's Limits. Callers facing remote peers treat it like any other
// malformed input, but may want to log it differently: it usually means a
// hostile or absurdly large message rather than a buggy encoder.
var ErrLimitExceeded = errors.New("limit exceeded")

// ErrDuplicateKey is wrapped by a SyntaxError when a dictionary holds the
// same key twice. Such input is refused because different parsers would
// disagree on which of the two values counts.
var ErrDuplicateKey = errors.New("duplicate dictionary key")

// ErrTrailingData is wrapped by a SyntaxError when bytes follow the single
// top-level value that Unmarshal and Decode expect.
var ErrTrailingData = errors.New("trailing data after value")

// SyntaxError reports input that is not valid bencode, or that breaks the
// decoder's limits. Offset is the byte offset in the input where the
// problem was found.
type SyntaxError struct {
	Offset int
	Msg    string
	// Err is an optional sentinel (ErrLimitExceeded, ErrDuplicateKey,
	// ErrTrailingData) that lets callers classify the failure with
	// errors.Is.
	Err error
}

// Error describes the problem and where it is.
func (e *SyntaxError) Error() string {
	return fmt.Sprintf("bencode: %s at offset %d", e.Msg, e.Offset)
}

// Unwrap returns the sentinel behind the error, if any.
func (e *SyntaxError) Unwrap() error { return e.Err }

// UnmarshalTypeError reports a well-formed value that does not fit the Go
// value it is decoded into, such as a string for an int field or an integer
// that overflows its target.
type UnmarshalTypeError struct {
	// Value names the bencode value: "integer", "string", "list", "dict",
	// or a description such as "integer 300".
	Value string
	// Type is the Go type that could not hold it.
	Type reflect.Type
	// Field is the dotted path from the top-level value to the field, such
	// as "info.files[2].length"; empty at the top level.
	Field string
	// Offset is the byte offset of the value in the input.
	Offset int
}

// Error describes the mismatch and where it is.
func (e *UnmarshalTypeError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("bencode: cannot decode %s into %s (field %s) at offset %d", e.Value, e.Type, e.Field, e.Offset)
	}
	return fmt.Sprintf("bencode: cannot decode %s into %s at offset %d", e.Value, e.Type, e.Offset)
}

// UnsupportedTypeError is returned by Marshal, and by Unmarshal for its
// target, when a Go type has no bencode form (floats, channels, functions,
// maps whose keys are not strings, ...).
type UnsupportedTypeError struct {
	Type reflect.Type
}

// Error names the type.
func (e *UnsupportedTypeError) Error() string {
	return "bencode: unsupported type " + e.Type.String()
}

// UnsupportedValueError is returned by Marshal for a value of a supported
// type that still cannot be written, such as a nil pointer inside a list
// (bencode has no null) or a cycle of pointers.
type UnsupportedValueError struct {
	Type reflect.Type
	Msg  string
}

// Error describes the value.
func (e *UnsupportedValueError) Error() string {
	return "bencode: cannot encode " + e.Type.String() + ": " + e.Msg
}

// InvalidUnmarshalError is returned when the target passed to Unmarshal is
// not a non-nil pointer.
type InvalidUnmarshalError struct {
	Type reflect.Type
}

// Error explains what Unmarshal needs.
func (e *InvalidUnmarshalError) Error() string {
	if e.Type == nil {
		return "bencode: Unmarshal(nil)"
	}
	if e.Type.Kind() != reflect.Pointer {
		return "bencode: Unmarshal(non-pointer " + e.Type.String() + ")"
	}
	return "bencode: Unmarshal(nil " + e.Type.String() + ")"
}

// withField prefixes the field path of a type error as the error travels up
// through struct fields, list indexes and map keys. Building the path only
// on the error path keeps successful decoding free of string work.
func withField(err error, name string) error {
	var te *UnmarshalTypeError
	if errors.As(err, &te) {
		switch {
		case te.Field == "":
			te.Field = name
		case te.Field[0] == '[':
			te.Field = name + te.Field
		default:
			te.Field = name + "." + te.Field
		}
	}
	return err
}
