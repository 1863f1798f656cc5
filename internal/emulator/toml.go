package emulator

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/floodgate-p2p/floodgate/internal/terms"
	"github.com/floodgate-p2p/floodgate/internal/units"
)

// scenarioFile is the TOML form of a scenario (DESIGN §6); sizes, rates
// and durations are strings such as "64MiB", "2MiB/s" and "30s".
type scenarioFile struct {
	Size         string      `toml:"size"`
	PieceLength  string      `toml:"piece_length"`
	Payments     *bool       `toml:"payments"`
	QoS          *bool       `toml:"qos"`
	RandomSeed   uint64      `toml:"random_seed"`
	StallTimeout string      `toml:"stall_timeout"`
	MaxDuration  string      `toml:"max_duration"`
	Origin       originFile  `toml:"origin"`
	Classes      []classFile `toml:"class"`
	Groups       []groupFile `toml:"group"`
}

type originFile struct {
	Upload string `toml:"upload"`
}

type classFile struct {
	Name        string `toml:"name"`
	MinRate     string `toml:"min_rate"`
	PricePerMiB int64  `toml:"price_per_mib"`
	Streaming   bool   `toml:"streaming"`
	Startup     string `toml:"startup"`
}

type groupFile struct {
	Name      string `toml:"name"`
	Count     int    `toml:"count"`
	Class     string `toml:"class"`
	Upload    string `toml:"upload"`
	Download  string `toml:"download"`
	Arrive    string `toml:"arrive"`
	Linger    string `toml:"linger"`
	Behaviour string `toml:"behaviour"`
	OnRefusal string `toml:"on_refusal"`
	Balance   int64  `toml:"balance"`
}

// ErrScenario is wrapped by every scenario-file error.
var ErrScenario = errors.New("scenario")

// ParseScenario reads a TOML scenario. Unknown keys are errors, so a typo
// does not silently change the experiment. It returns notes about keys
// that are accepted but not yet acted on.
func ParseScenario(data []byte) (Scenario, []string, error) {
	var f scenarioFile
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&f)
	if err != nil {
		return Scenario{}, nil, fmt.Errorf("%w: %w", ErrScenario, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return Scenario{}, nil, fmt.Errorf("%w: unknown keys: %s", ErrScenario, strings.Join(keys, ", "))
	}
	var notes []string
	bad := func(format string, args ...any) (Scenario, []string, error) {
		return Scenario{}, nil, fmt.Errorf("%w: "+format, append([]any{ErrScenario}, args...)...)
	}
	sc := Scenario{RandomSeed: f.RandomSeed, Payments: true, StallTimeout: 30 * time.Second, MaxDuration: 600 * time.Second}
	if f.Payments != nil {
		sc.Payments = *f.Payments
	}
	if f.QoS != nil && *f.QoS {
		notes = append(notes, "qos = true: guaranteed rates are not enforced yet; classes run best effort at their prices")
	}
	if sc.Size, err = units.ParseSize(f.Size); err != nil {
		return bad("size: %v", err)
	}
	sc.PieceLength = 256 << 10
	if f.PieceLength != "" {
		if sc.PieceLength, err = units.ParseSize(f.PieceLength); err != nil {
			return bad("piece_length: %v", err)
		}
	}
	for key, dst := range map[string]*time.Duration{"stall_timeout": &sc.StallTimeout, "max_duration": &sc.MaxDuration} {
		v := map[string]string{"stall_timeout": f.StallTimeout, "max_duration": f.MaxDuration}[key]
		if v == "" {
			continue
		}
		if *dst, err = time.ParseDuration(v); err != nil {
			return bad("%s: %v", key, err)
		}
	}
	if sc.OriginUpload, err = units.ParseRate(f.Origin.Upload); err != nil {
		return bad("origin.upload: %v", err)
	}
	for _, c := range f.Classes {
		cls := terms.Class{Name: c.Name, PricePerMiB: c.PricePerMiB, Streaming: c.Streaming}
		if cls.MinRate, err = units.ParseRate(orZero(c.MinRate)); err != nil {
			return bad("class %q min_rate: %v", c.Name, err)
		}
		if c.Startup != "" {
			if cls.Startup, err = time.ParseDuration(c.Startup); err != nil {
				return bad("class %q startup: %v", c.Name, err)
			}
		}
		if err := cls.Validate(); err != nil {
			return bad("class %q: %v", c.Name, err)
		}
		if cls.Streaming {
			notes = append(notes, fmt.Sprintf("class %q: streaming deadlines are not scheduled yet; pieces are picked rarest first", c.Name))
		}
		sc.Classes = append(sc.Classes, cls)
	}
	for _, g := range f.Groups {
		gr := Group{Name: g.Name, Count: g.Count, Class: g.Class, Balance: g.Balance}
		if gr.Upload, err = units.ParseRate(orZero(g.Upload)); err != nil {
			return bad("group %q upload: %v", g.Name, err)
		}
		if gr.Download, err = units.ParseRate(orZero(g.Download)); err != nil {
			return bad("group %q download: %v", g.Name, err)
		}
		if gr.ArriveFrom, gr.ArriveTo, err = parseSpread(orDefault(g.Arrive, "0s")); err != nil {
			return bad("group %q arrive: %v", g.Name, err)
		}
		switch g.Linger {
		case "forever":
			gr.Linger = -1
		case "":
		default:
			if gr.Linger, err = time.ParseDuration(g.Linger); err != nil || gr.Linger < 0 {
				return bad("group %q linger: want a duration or \"forever\"", g.Name)
			}
		}
		switch g.Behaviour {
		case "", "honest":
		case "no_pay", "corrupt":
			return bad("group %q: behaviour %q is not supported by the emulator yet (hostile peers are covered by the test suite)", g.Name, g.Behaviour)
		default:
			return bad("group %q: unknown behaviour %q (honest, no_pay, corrupt)", g.Name, g.Behaviour)
		}
		switch g.OnRefusal {
		case "", "retry", "leave", "best_effort":
		default:
			return bad("group %q: unknown on_refusal %q (retry, leave, best_effort)", g.Name, g.OnRefusal)
		}
		if gr.Class == "" && len(sc.Classes) > 0 {
			gr.Class = sc.Classes[0].Name
		}
		sc.Groups = append(sc.Groups, gr)
	}
	if err := sc.Validate(); err != nil {
		return Scenario{}, nil, fmt.Errorf("%w: %w", ErrScenario, err)
	}
	return sc, notes, nil
}

// parseSpread reads "5s" or "0s..20s".
func parseSpread(s string) (from, to time.Duration, err error) {
	a, b, ok := strings.Cut(s, "..")
	if from, err = time.ParseDuration(strings.TrimSpace(a)); err != nil {
		return 0, 0, err
	}
	if !ok {
		return from, from, nil
	}
	if to, err = time.ParseDuration(strings.TrimSpace(b)); err != nil {
		return 0, 0, err
	}
	if to < from {
		return 0, 0, fmt.Errorf("%q ends before it starts", s)
	}
	return from, to, nil
}

func orZero(s string) string { return orDefault(s, "0") }

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
