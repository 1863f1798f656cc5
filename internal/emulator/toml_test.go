package emulator

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const designExample = `
size = "64MiB"
piece_length = "256KiB"
payments = true
qos = true
random_seed = 1
stall_timeout = "30s"
max_duration = "600s"

[origin]
upload = "8MiB/s"

[[class]]
name = "gold"
min_rate = "2MiB/s"
price_per_mib = 30
[[class]]
name = "live"
min_rate = "1MiB/s"
streaming = true
startup = "4s"
price_per_mib = 40
[[class]]
name = "bronze"
min_rate = "0"
price_per_mib = 10

[[group]]
name = "fans"
count = 30
class = "bronze"
upload = "1MiB/s"
download = "10MiB/s"
arrive = "0s..20s"
linger = "forever"
behaviour = "honest"
on_refusal = "retry"
balance = 0
`

func TestParseDesignExample(t *testing.T) {
	sc, notes, err := ParseScenario([]byte(designExample))
	if err != nil {
		t.Fatal(err)
	}
	if sc.Size != 64<<20 || sc.PieceLength != 256<<10 || sc.OriginUpload != 8<<20 || !sc.Payments {
		t.Fatalf("scenario %+v", sc)
	}
	if len(sc.Classes) != 3 || sc.Classes[1].Startup != 4*time.Second || !sc.Classes[1].Streaming || sc.Classes[0].MinRate != 2<<20 {
		t.Fatalf("classes %+v", sc.Classes)
	}
	g := sc.Groups[0]
	if g.Count != 30 || g.ArriveTo != 20*time.Second || g.Linger != -1 || g.Download != 10<<20 || g.Class != "bronze" {
		t.Fatalf("group %+v", g)
	}
	if len(notes) != 2 {
		t.Fatalf("want notes for qos and streaming, got %q", notes)
	}
	// N·F / (u_origin + Σu) = 30·64 / (8 + 30) s.
	if kr := sc.KumarRoss(); kr < 50.5 || kr > 50.6 {
		t.Fatalf("Kumar-Ross bound %v", kr)
	}
}

func TestParseRejects(t *testing.T) {
	for name, tc := range map[string]struct{ edit, want string }{
		"typo key":      {`size = "64MiB"`, "sise = \"64MiB\""},
		"bad size":      {`size = "64MiB"`, `size = "lots"`},
		"bad rate":      {`upload = "8MiB/s"`, `upload = "fast"`},
		"bad spread":    {`arrive = "0s..20s"`, `arrive = "20s..0s"`},
		"bad linger":    {`linger = "forever"`, `linger = "always"`},
		"hostile":       {`behaviour = "honest"`, `behaviour = "no_pay"`},
		"unknown class": {`class = "bronze"`, `class = "platinum"`},
		"no peers":      {`count = 30`, `count = 0`},
	} {
		t.Run(name, func(t *testing.T) {
			in := strings.Replace(designExample, tc.edit, tc.want, 1)
			if _, _, err := ParseScenario([]byte(in)); !errors.Is(err, ErrScenario) {
				t.Fatalf("err = %v, want a scenario error", err)
			}
		})
	}
}

func FuzzParseScenario(f *testing.F) {
	f.Add([]byte(designExample))
	f.Add([]byte("size = 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		sc, _, err := ParseScenario(data)
		if err == nil && sc.Validate() != nil {
			t.Fatal("parsed scenario does not validate")
		}
	})
}
