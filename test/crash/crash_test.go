// Package crash is the broker's crash test: it runs `floodgate provider` as
// a real process, drives concurrent opens and redemptions through the Go
// client, SIGKILLs the process at random (seeded) moments, restarts it,
// retries every unacknowledged request with the same idempotency key, and
// finally checks conservation and that every balance equals a model in
// which nothing was paid twice.
//
// Environment:
//
//	FLOODGATE_BIN            use this binary instead of building ./cmd/floodgate
//	FLOODGATE_TEST_POSTGRES  PostgreSQL URL; the PostgreSQL variant skips without it (fails when CI=true)
//	FLOODGATE_CRASH_SEED     reproduce a run (the seed is logged)
package crash

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/floodgate-p2p/floodgate/internal/broker"
	"github.com/floodgate-p2p/floodgate/internal/hashchain"
	"github.com/floodgate-p2p/floodgate/internal/identity"
	"github.com/floodgate-p2p/floodgate/internal/testbin"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Storm shape: workers×channelsPerWorker channels of about 15 calls each
// (open, ~13 redemptions of ~15 steps to a random index, half closed), so
// about 2 600 money-moving calls per store, with up to maxKills crashes in
// between; a run takes 3-10 s per store on two busy cores.
const (
	payers, payees    = 3, 3
	workers           = 6
	channelsPerWorker = 30
	chainLength       = 400
	maxStep           = 30
	mintPerPayer      = 10_000_000
	maxKills          = 15
	stormDeadline     = 90 * time.Second
)

func TestCrashSQLite(t *testing.T) {
	runCrash(t, "")
}

func TestCrashPostgres(t *testing.T) {
	base := os.Getenv("FLOODGATE_TEST_POSTGRES")
	if base == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("FLOODGATE_TEST_POSTGRES is not set, and CI=true requires the PostgreSQL crash test")
		}
		t.Skip("FLOODGATE_TEST_POSTGRES is not set; skipping the PostgreSQL crash test")
	}
	schema := fmt.Sprintf("crash_%d_%d", os.Getpid(), time.Now().UnixNano())
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal("FLOODGATE_TEST_POSTGRES is not a URL")
	}
	q := u.Query()
	q.Set("schema", schema)
	u.RawQuery = q.Encode()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Logf("dropping schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
			t.Logf("dropping schema %s: %v", schema, err)
		}
	})
	runCrash(t, u.String())
}

// chanModel is what the test believes about one channel: everything in it
// was acknowledged by the broker.
type chanModel struct {
	id                 string
	payer, payee       int
	length, unit       int64
	redeemed           int64
	closed             bool
	ackPaid, ackRefund int64
}

func runCrash(t *testing.T, dbURL string) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("FLOODGATE_CRASH_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("FLOODGATE_CRASH_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("seed %d (set FLOODGATE_CRASH_SEED to reproduce)", seed)

	p := newProvider(t, floodgateBinary(t), dbURL)
	p.start(t)
	defer p.cleanup()
	ctx := context.Background()

	provKey, err := identity.ReadKeyFile(filepath.Join(p.dataDir, "provider.key"))
	if err != nil {
		t.Fatal(err)
	}
	prov := p.client(t, provKey)
	var payerC, payeeC []*broker.Client
	for i := range payers + payees {
		var s [32]byte
		s[0], s[1] = byte(i), byte(seed)
		c := p.client(t, identity.NewKeyFromSeed(s))
		if i < payers {
			payerC = append(payerC, c)
		} else {
			payeeC = append(payeeC, c)
		}
		if err := persist(ctx, func() error { _, err := c.Register(ctx); return err }); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range payerC {
		key := fmt.Sprintf("mint-%d-%d", seed, i)
		if err := persist(ctx, func() error { return prov.Mint(ctx, key, c.Account(), mintPerPayer) }); err != nil {
			t.Fatal(err)
		}
	}

	stormCtx, stopStorm := context.WithTimeout(ctx, stormDeadline)
	defer stopStorm()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		models []*chanModel
	)
	for w := range workers {
		wg.Go(func() {
			ms, err := worker(stormCtx, seed, w, payerC, payeeC)
			mu.Lock()
			models = append(models, ms...)
			mu.Unlock()
			if err != nil {
				t.Errorf("worker %d: %v", w, err)
			}
		})
	}
	stormDone := make(chan struct{})
	go func() { wg.Wait(); close(stormDone) }()

	kills := 0
	stormStart := time.Now()
	rng := rand.New(rand.NewPCG(seed, 0xc0ffee))
killing:
	for kills < maxKills {
		select {
		case <-stormDone:
			break killing
		case <-time.After(time.Duration(20+rng.IntN(300)) * time.Millisecond):
		}
		p.kill(t)
		kills++
		p.start(t)
	}
	<-stormDone
	t.Logf("%d channels in %v, %d SIGKILLs", len(models), time.Since(stormStart).Round(time.Millisecond), kills)
	if t.Failed() {
		return
	}
	if kills == 0 {
		t.Fatal("the storm ended before the first SIGKILL; make it longer")
	}

	// Verify: conservation, then every balance and channel against the
	// model.
	audit, err := prov.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(payers * mintPerPayer); !audit.Conserved || audit.Minted != want || audit.SumOfBalances != want {
		t.Fatalf("audit %+v, want %d minted and conserved", audit, want)
	}
	wantPayer := make([]int64, payers)
	wantPayee := make([]int64, payees)
	ackPaid := make([]int64, payees)
	for i := range wantPayer {
		wantPayer[i] = mintPerPayer
	}
	for _, m := range models {
		wantPayer[m.payer] -= m.length * m.unit
		wantPayee[m.payee] += m.redeemed * m.unit
		ackPaid[m.payee] += m.ackPaid
		if m.closed {
			wantPayer[m.payer] += (m.length - m.redeemed) * m.unit
			if m.ackRefund != (m.length-m.redeemed)*m.unit {
				t.Errorf("channel %s: close reported refund %d, want %d", m.id, m.ackRefund, (m.length-m.redeemed)*m.unit)
			}
		}
		st, err := prov.Channel(ctx, m.id)
		if err != nil {
			t.Fatal(err)
		}
		if st.Channel.Redeemed != m.redeemed || (st.Channel.State == "closed") != m.closed {
			t.Errorf("channel %s is %+v, model says redeemed %d closed %v", m.id, st.Channel, m.redeemed, m.closed)
		}
	}
	for i, c := range payerC {
		if got, err := prov.Balance(ctx, c.Account()); err != nil || got != wantPayer[i] {
			t.Errorf("payer %d balance %d (%v), model %d", i, got, err, wantPayer[i])
		}
	}
	for i, c := range payeeC {
		got, err := prov.Balance(ctx, c.Account())
		if err != nil || got != wantPayee[i] {
			t.Errorf("payee %d balance %d (%v), model %d: a redemption was paid twice or lost", i, got, err, wantPayee[i])
		}
		if ackPaid[i] > got {
			t.Errorf("payee %d: acknowledged payments %d exceed balance %d", i, ackPaid[i], got)
		}
	}
	p.stop(t)
}

// worker opens channelsPerWorker channels one after another, redeems each
// in random steps to a random index, and closes about half of them. Every
// call is repeated until acknowledged, with the same idempotency key.
func worker(ctx context.Context, seed uint64, w int, payerC, payeeC []*broker.Client) ([]*chanModel, error) {
	rng := rand.New(rand.NewPCG(seed, uint64(w)))
	var out []*chanModel
	for c := range channelsPerWorker {
		m := &chanModel{payer: w % payers, payee: (w + c) % payees, length: chainLength, unit: 1 + rng.Int64N(5)}
		payer, payee := payerC[m.payer], payeeC[m.payee]
		var chSeed [hashchain.Size]byte
		for i := range chSeed {
			chSeed[i] = byte(rng.Uint32())
		}
		chain := hashchain.New(chSeed, m.length)
		idem := fmt.Sprintf("open-%d-%d-%d", seed, w, c)
		req := broker.OpenRequest{Payee: payee.Account(), Root: chain.Root(), Length: m.length, Unit: m.unit, Expiry: time.Now().Add(time.Hour)}
		err := persist(ctx, func() error {
			resp, err := payer.OpenChannel(ctx, idem, req)
			m.id = resp.Channel.ID
			return err
		})
		if err != nil {
			return out, fmt.Errorf("open: %w", err)
		}
		out = append(out, m)
		target := 1 + rng.Int64N(m.length)
		for m.redeemed < target {
			idx := min(target, m.redeemed+1+rng.Int64N(maxStep))
			pre, err := chain.Preimage(idx)
			if err != nil {
				return out, err
			}
			err = persist(ctx, func() error {
				r, err := payee.Redeem(ctx, m.id, idx, pre)
				m.ackPaid += r.Paid
				return err
			})
			if err != nil {
				return out, fmt.Errorf("redeem %s to %d: %w", m.id, idx, err)
			}
			m.redeemed = idx
		}
		if rng.IntN(2) == 0 {
			err := persist(ctx, func() error {
				r, err := payee.Close(ctx, m.id)
				m.ackRefund = r.Refund
				return err
			})
			if err != nil {
				return out, fmt.Errorf("close %s: %w", m.id, err)
			}
			m.closed = true
		}
	}
	return out, nil
}

// persist repeats call until it succeeds, fails permanently (a 4xx other
// than a stale timestamp), or ctx ends. Lost connections and 5xx while the
// provider is down or restarting are expected.
func persist(ctx context.Context, call func() error) error {
	for {
		err := call()
		if err == nil {
			return nil
		}
		var ae *broker.Error
		if errors.As(err, &ae) && !ae.Temporary() {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// provider runs and restarts `floodgate provider` on a fixed address.
type provider struct {
	bin, dataDir, addr, dbURL string
	logPath                   string
	cmd                       *exec.Cmd
	exited                    chan error
	httpc                     *http.Client
}

func newProvider(t *testing.T, bin, dbURL string) *provider {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 32}
	return &provider{bin: bin, dataDir: filepath.Join(dir, "data"), addr: addr, dbURL: dbURL,
		logPath: filepath.Join(dir, "provider.log"), httpc: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

func (p *provider) client(t *testing.T, k *identity.PrivateKey) *broker.Client {
	c, err := broker.NewClient(broker.ClientConfig{BaseURL: "http://" + p.addr, Key: k, HTTPClient: p.httpc, MaxAttempts: 2, Backoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (p *provider) start(t *testing.T) {
	t.Helper()
	args := []string{"provider", "--listen", p.addr, "--data-dir", p.dataDir, "--expiry-grace", "1h"}
	if p.dbURL != "" {
		args = append(args, "--db", p.dbURL)
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	p.cmd = exec.Command(p.bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting provider: %v", err)
	}
	exited := make(chan error, 1)
	p.exited = exited
	cmd := p.cmd
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			p.exited <- err
			t.Fatalf("provider exited during start: %v\n%s", err, p.log())
		default:
		}
		resp, err := p.httpc.Get("http://" + p.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("provider not healthy after 30 s\n%s", p.log())
}

// kill SIGKILLs the provider and waits until it is gone.
func (p *provider) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL: %v", err)
	}
	<-p.exited
	p.cmd = nil
	p.httpc.CloseIdleConnections()
}

// stop asks the provider to shut down gracefully and checks it exits 0.
func (p *provider) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case err := <-p.exited:
		p.cmd = nil
		if err != nil {
			t.Fatalf("provider exited with %v after SIGTERM\n%s", err, p.log())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("provider still running 20 s after SIGTERM")
	}
}

// cleanup kills a provider still running (after a failed test).
func (p *provider) cleanup() {
	if p.cmd != nil {
		p.cmd.Process.Kill()
		<-p.exited
	}
	p.httpc.CloseIdleConnections()
}

func (p *provider) log() string {
	b, _ := os.ReadFile(p.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// floodgateBinary returns FLOODGATE_BIN or builds ./cmd/floodgate, and
// checks it has the provider command.
func floodgateBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("FLOODGATE_BIN")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "floodgate")
		if err := testbin.Build(bin); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(bin, "provider", "--help").CombinedOutput(); err != nil {
		msg := fmt.Sprintf("%s has no working provider command (%v): %.300s", bin, err, out)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}
