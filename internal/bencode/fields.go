package bencode

import (
	"reflect"
	"sort"
	"strings"
	"sync"
)

// field describes one struct field as a dictionary entry.
type field struct {
	name      string // dictionary key
	index     []int  // path for reflect.Value.FieldByIndex
	omitEmpty bool
}

// structInfo is the dictionary view of a struct type.
type structInfo struct {
	fields []field        // sorted by name, the order Marshal writes them in
	byName map[string]int // key -> position in fields
}

// structCache memoises structInfo per type. It is a pure cache of facts
// derived from the type system, never observable state, so sharing it
// across the package is safe and spares every Marshal and Unmarshal the
// cost of re-reading struct tags.
var structCache sync.Map // reflect.Type -> *structInfo

func cachedStructInfo(t reflect.Type) *structInfo {
	if si, ok := structCache.Load(t); ok {
		return si.(*structInfo)
	}
	si := buildStructInfo(t)
	actual, _ := structCache.LoadOrStore(t, si)
	return actual.(*structInfo)
}

func buildStructInfo(t reflect.Type) *structInfo {
	si := &structInfo{byName: make(map[string]int)}
	collectFields(t, nil, si, map[reflect.Type]bool{})
	sort.Slice(si.fields, func(i, j int) bool { return si.fields[i].name < si.fields[j].name })
	for i, f := range si.fields {
		si.byName[f.name] = i
	}
	return si
}

// collectFields adds t's fields to si. Direct fields come first so that they
// shadow fields of the same key in embedded structs, which are walked
// afterwards; visited guards against embedding cycles through types.
func collectFields(t reflect.Type, prefix []int, si *structInfo, visited map[reflect.Type]bool) {
	if visited[t] {
		return
	}
	visited[t] = true
	var embedded []reflect.StructField
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag, hasTag := sf.Tag.Lookup("bencode")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if sf.Anonymous && name == "" && sf.Type.Kind() == reflect.Struct {
			if hasTag || sf.IsExported() || hasExportedFields(sf.Type) {
				embedded = append(embedded, sf)
			}
			continue
		}
		if !sf.IsExported() {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		if _, dup := si.byName[name]; dup {
			continue
		}
		index := append(append([]int(nil), prefix...), i)
		si.byName[name] = len(si.fields)
		si.fields = append(si.fields, field{
			name:      name,
			index:     index,
			omitEmpty: hasOption(opts, "omitempty"),
		})
	}
	for _, sf := range embedded {
		collectFields(sf.Type, append(append([]int(nil), prefix...), sf.Index...), si, visited)
	}
}

func hasExportedFields(t reflect.Type) bool {
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).IsExported() {
			return true
		}
	}
	return false
}

func hasOption(opts, want string) bool {
	for opts != "" {
		var o string
		o, opts, _ = strings.Cut(opts, ",")
		if o == want {
			return true
		}
	}
	return false
}
