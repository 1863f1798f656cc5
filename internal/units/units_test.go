package units

import "testing"

func TestParseSize(t *testing.T) {
	good := map[string]int64{
		"16384": 16384, "256KiB": 256 << 10, "2MiB": 2 << 20, "1.5GiB": 3 << 29,
		"1MB": 1_000_000, "64M": 64 << 20, " 7 ": 7, "0": 0, "10B": 10,
	}
	for in, want := range good {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "abc", "-1", "1e400KiB", "NaN", "5XB", "-2MiB"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) succeeded", bad)
		}
	}
}

func TestParseRate(t *testing.T) {
	if got, err := ParseRate("2MiB/s"); err != nil || got != 2<<20 {
		t.Fatalf("got %d, %v", got, err)
	}
	if _, err := ParseRate("fast"); err == nil {
		t.Fatal("accepted nonsense")
	}
}

func TestFormat(t *testing.T) {
	if s := FormatBytes(1536); s != "1.5 KiB" {
		t.Fatal(s)
	}
	if s := FormatRate(3 << 20); s != "3.0 MiB/s" {
		t.Fatal(s)
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"256KiB", "1.5GB", "-1", "9999999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := ParseSize(s); err == nil && n < 0 {
			t.Fatalf("negative size %d from %q", n, s)
		}
	})
}
