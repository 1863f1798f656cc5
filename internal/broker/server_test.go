package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/floodgate-p2p/floodgate/internal/hashchain"
	"github.com/floodgate-p2p/floodgate/internal/identity"
	"github.com/floodgate-p2p/floodgate/internal/ledger"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a settable clock shared by the server and clients in a test.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

type env struct {
	t        testing.TB
	clock    *clock
	provider *identity.PrivateKey
	srv      *Server
	http     *httptest.Server
	reg      *prometheus.Registry
}

const testGrace = 10 * time.Minute

func newEnv(t testing.TB) *env {
	t.Helper()
	return newEnvWith(t, func(cfg *ledger.Config) { cfg.MaxChainLength = 1 << 16 })
}

// newEnvWith is newEnv with the ledger configuration adjusted by tune,
// which starts from the test defaults (grace testGrace, the shared clock).
func newEnvWith(t testing.TB, tune func(*ledger.Config)) *env {
	t.Helper()
	ctx := context.Background()
	store, err := ledger.OpenSQLite(ctx, filepath.Join(t.TempDir(), "ledger.db"), ledger.SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	e := &env{t: t, clock: newClock(), provider: key(t, 100), reg: prometheus.NewRegistry()}
	cfg := ledger.Config{
		ProviderAccount: ledger.AccountID(e.provider.AccountID()),
		ExpiryGrace:     testGrace, Now: e.clock.Now,
	}
	tune(&cfg)
	led := ledger.New(store, cfg)
	// Requests are signed "now" by the shared clock; starting the server a
	// second in the past keeps the restart guard out of these tests.
	e.clock.Advance(-time.Second)
	e.srv, err = NewServer(Config{Ledger: led, ProviderKey: e.provider, Now: e.clock.Now, Registerer: e.reg})
	e.clock.Advance(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Init(ctx); err != nil {
		t.Fatal(err)
	}
	e.http = httptest.NewServer(e.srv)
	t.Cleanup(e.http.Close)
	return e
}

func key(t testing.TB, b byte) *identity.PrivateKey {
	t.Helper()
	var seed [32]byte
	seed[0], seed[1] = b, 0xfe
	return identity.NewKeyFromSeed(seed)
}

func (e *env) client(k *identity.PrivateKey) *Client {
	e.t.Helper()
	pub := e.provider.Public()
	c, err := NewClient(ClientConfig{BaseURL: e.http.URL, Key: k, ProviderKey: &pub, Now: e.clock.Now, Backoff: time.Millisecond})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// registered returns a client for a new registered account holding funds.
func (e *env) registered(b byte, funds int64) *Client {
	e.t.Helper()
	c := e.client(key(e.t, b))
	if _, err := c.Register(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	if funds > 0 {
		if err := e.client(e.provider).Mint(context.Background(), NewIdempotencyKey(), c.Account(), funds); err != nil {
			e.t.Fatal(err)
		}
	}
	return c
}

func (e *env) balance(c *Client) int64 {
	e.t.Helper()
	b, err := e.client(e.provider).Balance(context.Background(), c.Account())
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

func (e *env) audit(wantMinted int64) {
	e.t.Helper()
	a, err := e.client(e.provider).Audit(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	if !a.Conserved || a.Minted != wantMinted || a.SumOfBalances != wantMinted {
		e.t.Fatalf("audit %+v, want %d minted and conserved", a, wantMinted)
	}
}

func chain(b byte, n int64) *hashchain.Chain {
	var seed [hashchain.Size]byte
	seed[0] = b
	return hashchain.New(seed, n)
}

func pre(t testing.TB, c *hashchain.Chain, i int64) identity.Digest {
	t.Helper()
	p, err := c.Preimage(i)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	var ae *Error
	if !errors.As(err, &ae) || ae.Code != code {
		t.Fatalf("error %v, want code %q", err, code)
	}
}

func TestHappyPath(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	payer, payee := e.registered(1, 1000), e.registered(2, 0)
	reg, err := payee.Register(ctx) // again: idempotent, fresh certificate
	if err != nil || reg.Account != payee.Account() {
		t.Fatalf("re-register: %+v %v", reg, err)
	}
	if err := reg.Certificate.Verify(e.provider.Public(), e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	ch := chain(1, 100)
	open, err := payer.OpenChannel(ctx, "open-1", OpenRequest{Payee: payee.Account(), Root: ch.Root(), Length: 100, Unit: 3, Expiry: e.clock.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if err := open.Voucher.CheckFor(e.provider.Public(), payee.Account(), e.clock.Now(), 50*time.Minute); err != nil {
		t.Fatal(err)
	}
	if open.Voucher.Channel != open.Channel.ID || !open.Voucher.Expiry.Equal(open.Channel.Expiry) {
		t.Fatalf("voucher %+v does not match channel %+v", open.Voucher, open.Channel)
	}
	if got := e.balance(payer); got != 700 {
		t.Fatalf("payer balance %d after open, want 700", got)
	}
	id := open.Channel.ID
	r, err := payee.Redeem(ctx, id, 10, pre(t, ch, 10))
	if err != nil || r.Paid != 30 || r.Redeemed != 10 {
		t.Fatalf("redeem: %+v %v", r, err)
	}
	for _, i := range []int64{10, 5} {
		r, err = payee.Redeem(ctx, id, i, pre(t, ch, i))
		if err != nil || r.Paid != 0 {
			t.Fatalf("repeat redeem %d: %+v %v", i, r, err)
		}
	}
	st, err := payer.Channel(ctx, id)
	if err != nil || st.Channel.Redeemed != 10 || st.Channel.State != ledger.StateOpen {
		t.Fatalf("status: %+v %v", st, err)
	}
	cl, err := payee.Close(ctx, id)
	if err != nil || cl.Refund != 270 {
		t.Fatalf("close: %+v %v", cl, err)
	}
	if cl, err = payee.Close(ctx, id); err != nil || cl.Refund != 270 {
		t.Fatalf("second close: %+v %v", cl, err)
	}
	if a, b := e.balance(payer), e.balance(payee); a != 970 || b != 30 {
		t.Fatalf("balances %d, %d; want 970, 30", a, b)
	}
	if own, err := payee.Balance(ctx, payee.Account()); err != nil || own != 30 {
		t.Fatalf("own balance %d %v", own, err)
	}
	e.audit(1000)

	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, mf := range mfs {
		found = found || mf.GetName() == "floodgate_broker_requests_total"
	}
	if !found {
		t.Fatal("requests metric not registered")
	}
}

func TestIdempotency(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	prov := e.client(e.provider)
	payer, payee := e.registered(1, 0), e.registered(2, 0)
	for range 3 {
		if err := prov.Mint(ctx, "pay-42", payer.Account(), 500); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.balance(payer); got != 500 {
		t.Fatalf("balance %d after repeated mint, want 500", got)
	}
	wantCode(t, prov.Mint(ctx, "pay-42", payer.Account(), 501), CodeConflict)
	req := OpenRequest{Payee: payee.Account(), Root: chain(1, 10).Root(), Length: 10, Unit: 10, Expiry: e.clock.Now().Add(time.Hour)}
	a, err := payer.OpenChannel(ctx, "k", req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := payer.OpenChannel(ctx, "k", req)
	if err != nil || b.Channel.ID != a.Channel.ID {
		t.Fatalf("retry opened %v (%v), want %s", b.Channel.ID, err, a.Channel.ID)
	}
	if got := e.balance(payer); got != 400 {
		t.Fatalf("balance %d after repeated open, want 400", got)
	}
	req.Unit = 11
	_, err = payer.OpenChannel(ctx, "k", req)
	wantCode(t, err, CodeConflict)
	// Another payer using the same key string gets its own channel.
	other := e.registered(3, 100)
	req.Unit = 10
	c, err := other.OpenChannel(ctx, "k", req)
	if err != nil || c.Channel.ID == a.Channel.ID || c.Channel.Payer != other.Account() {
		t.Fatalf("other payer's open: %+v %v", c.Channel, err)
	}
	e.audit(600)
}

// flaky forwards requests to h but, for the first drop requests, throws
// the response away and cuts the connection: the server acted, the client
// never heard.
type flaky struct {
	h    http.Handler
	drop atomic.Int32
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.drop.Add(-1) < 0 {
		f.h.ServeHTTP(w, r)
		return
	}
	f.h.ServeHTTP(httptest.NewRecorder(), r)
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		conn.Close()
	}
}

func TestClientRetriesWithSameIdempotencyKey(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	payer, payee := e.registered(1, 1000), e.registered(2, 0)
	f := &flaky{h: e.srv}
	hs := httptest.NewServer(f)
	defer hs.Close()
	pub := e.provider.Public()
	mk := func(k *identity.PrivateKey) *Client {
		c, err := NewClient(ClientConfig{BaseURL: hs.URL + "/broker", Key: k, ProviderKey: &pub, Now: e.clock.Now, Backoff: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	f.drop.Store(2)
	if err := mk(e.provider).Mint(ctx, "m1", payer.Account(), 50); err != nil {
		t.Fatal(err)
	}
	ch := chain(2, 20)
	f.drop.Store(2)
	open, err := mk(key(t, 1)).OpenChannel(ctx, "o1", OpenRequest{Payee: payee.Account(), Root: ch.Root(), Length: 20, Unit: 5, Expiry: e.clock.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	f.drop.Store(2)
	r, err := mk(key(t, 2)).Redeem(ctx, open.Channel.ID, 4, pre(t, ch, 4))
	if err != nil || r.Paid != 0 || r.Redeemed != 4 {
		t.Fatalf("redeem after lost responses: %+v %v (the first, lost attempt paid)", r, err)
	}
	if a, b := e.balance(payer), e.balance(payee); a != 1050-100 || b != 20 {
		t.Fatalf("balances %d, %d; want 950, 20", a, b)
	}
	f.drop.Store(100)
	c, _ := NewClient(ClientConfig{BaseURL: hs.URL, Key: e.provider, Now: e.clock.Now, Backoff: time.Millisecond, MaxAttempts: 3})
	if _, err := c.Audit(ctx); err == nil || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Fatalf("persistent failure: %v", err)
	}
	e.audit(1050)
}

// rawRequest signs a request by hand so tests can tamper with it.
func (e *env) rawRequest(k *identity.PrivateKey, method, path, idem string, body []byte, at time.Time) *http.Request {
	e.t.Helper()
	req, err := http.NewRequest(method, e.http.URL+APIPrefix+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if idem != "" {
		req.Header.Set(HeaderIdempotency, idem)
	}
	if err := SignRequest(req, body, k, at); err != nil {
		e.t.Fatal(err)
	}
	return req
}

// send sends req (re-sending the same bytes if called twice) and returns
// the decoded error, or nil for 200.
func (e *env) send(req *http.Request, body []byte) *Error {
	e.t.Helper()
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		e.t.Fatalf("error response with Content-Type %q", ct)
	}
	return DecodeErrorResponse(resp.StatusCode, data)
}

func wantAPI(t *testing.T, e *Error, status int, code string) {
	t.Helper()
	if e == nil || e.Status != status || e.Code != code {
		t.Fatalf("got %v, want %d %s", e, status, code)
	}
}

func TestHostileRequests(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	payer, payee, stranger := e.registered(1, 1000), e.registered(2, 0), e.registered(3, 10)
	ch := chain(1, 100)
	open, err := payer.OpenChannel(ctx, "o", OpenRequest{Payee: payee.Account(), Root: ch.Root(), Length: 100, Unit: 1, Expiry: e.clock.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	id := open.Channel.ID
	now := e.clock.Now()
	redeemBody, _ := json.Marshal(RedeemRequest{Index: 3, Preimage: pre(t, ch, 3)})
	redeemPath := "/channels/" + id + "/redeem"

	t.Run("forged signature", func(t *testing.T) {
		req := e.rawRequest(key(t, 2), "POST", redeemPath, "", redeemBody, now)
		req.Header.Set(HeaderKey, key(t, 1).Public().String()) // claim to be someone else
		wantAPI(t, e.send(req, redeemBody), 401, CodeBadSignature)
	})
	t.Run("tampered body", func(t *testing.T) {
		req := e.rawRequest(key(t, 2), "POST", redeemPath, "", redeemBody, now)
		other, _ := json.Marshal(RedeemRequest{Index: 4, Preimage: pre(t, ch, 4)})
		wantAPI(t, e.send(req, other), 401, CodeBadSignature)
	})
	t.Run("tampered idempotency key", func(t *testing.T) {
		body, _ := json.Marshal(MintRequest{Account: stranger.Account(), Amount: 5})
		req := e.rawRequest(e.provider, "POST", "/mint", "a", body, now)
		req.Header.Set(HeaderIdempotency, "b")
		wantAPI(t, e.send(req, body), 401, CodeBadSignature)
	})
	t.Run("tampered path", func(t *testing.T) {
		req := e.rawRequest(key(t, 2), "POST", redeemPath, "", redeemBody, now)
		req.URL.Path = APIPrefix + "/channels/" + id + "/close"
		wantAPI(t, e.send(req, []byte("{}")), 401, CodeBadSignature)
	})
	t.Run("missing headers", func(t *testing.T) {
		req := e.rawRequest(key(t, 2), "POST", redeemPath, "", redeemBody, now)
		req.Header.Del(HeaderSignature)
		wantAPI(t, e.send(req, redeemBody), 401, CodeUnauthenticated)
	})
	t.Run("replay", func(t *testing.T) {
		req := e.rawRequest(key(t, 2), "POST", redeemPath, "", redeemBody, now)
		if got := e.send(req, redeemBody); got != nil {
			t.Fatalf("first send: %v", got)
		}
		wantAPI(t, e.send(req, redeemBody), 401, CodeReplayed)
		if b := e.balance(payee); b != 3 {
			t.Fatalf("payee balance %d, want 3", b)
		}
	})
	t.Run("stale and future timestamps", func(t *testing.T) {
		for _, at := range []time.Time{now.Add(-2 * time.Minute), now.Add(2 * time.Minute)} {
			req := e.rawRequest(key(t, 2), "POST", redeemPath, "", redeemBody, at)
			wantAPI(t, e.send(req, redeemBody), 401, CodeStaleTimestamp)
		}
	})
	t.Run("signed before the broker started", func(t *testing.T) {
		req := e.rawRequest(key(t, 2), "POST", redeemPath, "", redeemBody, time.UnixMilli(e.srv.startMillis-1))
		wantAPI(t, e.send(req, redeemBody), 401, CodeStaleTimestamp)
	})
	t.Run("unregistered key", func(t *testing.T) {
		_, err := e.client(key(t, 50)).OpenChannel(ctx, "x", OpenRequest{Payee: payee.Account(), Root: ch.Root(), Length: 1, Unit: 1, Expiry: now.Add(time.Hour)})
		wantCode(t, err, CodeNotRegistered)
		if !errors.Is(err, ErrAuth) {
			t.Fatalf("%v does not unwrap to ErrAuth", err)
		}
	})
	t.Run("redeem by payer", func(t *testing.T) {
		_, err := payer.Redeem(ctx, id, 5, pre(t, ch, 5))
		wantCode(t, err, CodeForbidden)
	})
	t.Run("redeem someone else's channel", func(t *testing.T) {
		_, err := stranger.Redeem(ctx, id, 5, pre(t, ch, 5))
		wantCode(t, err, CodeNotFound)
		_, err = stranger.Channel(ctx, id)
		wantCode(t, err, CodeNotFound)
		_, err = stranger.Close(ctx, id)
		wantCode(t, err, CodeNotFound)
	})
	t.Run("voucher for another payee", func(t *testing.T) {
		if err := open.Voucher.CheckFor(e.provider.Public(), stranger.Account(), now, 0); !errors.Is(err, identity.ErrBadSignature) {
			t.Fatalf("stranger accepted the voucher: %v", err)
		}
	})
	t.Run("bad preimage", func(t *testing.T) {
		_, err := payee.Redeem(ctx, id, 5, pre(t, chain(9, 100), 5))
		wantCode(t, err, CodeBadPreimage)
		if !errors.Is(err, ledger.ErrBadPreimage) {
			t.Fatal("does not unwrap to ledger.ErrBadPreimage")
		}
	})
	t.Run("index beyond length", func(t *testing.T) {
		_, err := payee.Redeem(ctx, id, 101, identity.Digest{})
		wantCode(t, err, CodeInvalid)
		_, err = payee.Redeem(ctx, id, -1, identity.Digest{})
		wantCode(t, err, CodeInvalid)
	})
	t.Run("payer closes early", func(t *testing.T) {
		_, err := payer.Close(ctx, id)
		wantCode(t, err, CodeForbidden)
	})
	t.Run("overflow", func(t *testing.T) {
		_, err := payer.OpenChannel(ctx, "big", OpenRequest{Payee: payee.Account(), Root: ch.Root(), Length: 1 << 15, Unit: 1 << 62, Expiry: now.Add(time.Hour)})
		if err == nil {
			t.Fatal("overflowing channel opened")
		}
		if !errors.Is(err, ledger.ErrOverflow) && !errors.Is(err, ledger.ErrInvalid) {
			t.Fatalf("overflowing open: %v", err)
		}
		prov := e.client(e.provider)
		if err := prov.Mint(ctx, "max1", stranger.Account(), 1<<63-1-1010); err != nil {
			t.Fatal(err)
		}
		// Everything that can ever be minted now has been.
		wantCode(t, prov.Mint(ctx, "max2", payee.Account(), 1), CodeOverflow)
	})
	t.Run("insufficient funds", func(t *testing.T) {
		_, err := payer.OpenChannel(ctx, "poor", OpenRequest{Payee: payee.Account(), Root: ch.Root(), Length: 1000, Unit: 1000, Expiry: now.Add(time.Hour)})
		wantCode(t, err, CodeInsufficientFunds)
	})
	t.Run("expiry out of range", func(t *testing.T) {
		for _, exp := range []time.Time{now.Add(-time.Hour), now.Add(30 * time.Second), now.Add(31 * 24 * time.Hour)} {
			_, err := payer.OpenChannel(ctx, "exp", OpenRequest{Payee: payee.Account(), Root: ch.Root(), Length: 1, Unit: 1, Expiry: exp})
			wantCode(t, err, CodeInvalid)
		}
	})
	t.Run("channel to self", func(t *testing.T) {
		_, err := payer.OpenChannel(ctx, "self", OpenRequest{Payee: payer.Account(), Root: ch.Root(), Length: 1, Unit: 1, Expiry: now.Add(time.Hour)})
		wantCode(t, err, CodeInvalid)
	})
	t.Run("missing idempotency key", func(t *testing.T) {
		body, _ := json.Marshal(OpenRequest{Payee: payee.Account(), Root: ch.Root(), Length: 1, Unit: 1, Expiry: now.Add(time.Hour)})
		wantAPI(t, e.send(e.rawRequest(key(t, 1), "POST", "/channels", "", body, now), body), 400, CodeIdempotencyRequired)
	})
	t.Run("provider-only calls", func(t *testing.T) {
		wantCode(t, payer.Mint(ctx, "self-mint", payer.Account(), 1), CodeForbidden)
		_, err := payer.Audit(ctx)
		wantCode(t, err, CodeForbidden)
		_, err = payer.Balance(ctx, payee.Account())
		wantCode(t, err, CodeForbidden)
	})
	t.Run("oversized body", func(t *testing.T) {
		body := []byte(`{"index": 1, "preimage": "` + strings.Repeat("0", 10000) + `"}`)
		wantAPI(t, e.send(e.rawRequest(key(t, 2), "POST", redeemPath, "", body, now), body), 413, CodeTooLarge)
	})
	t.Run("malformed JSON", func(t *testing.T) {
		for _, body := range []string{
			`not json`, `{"index": 1}{"index": 2}`, `{"index": 1, "preimage": "00", "extra": 1}`,
			`{"index": "1"}`, `{"index": 1.5}`, `{"index": 99999999999999999999}`, `[]`, ``, `{"index": 1, "preimage": "zz"}`,
		} {
			got := e.send(e.rawRequest(key(t, 2), "POST", redeemPath, "", []byte(body), now), []byte(body))
			if got == nil || got.Status != 400 {
				t.Errorf("body %q: %v, want 400", body, got)
			}
		}
	})
	t.Run("wrong content type", func(t *testing.T) {
		req := e.rawRequest(key(t, 2), "POST", redeemPath, "", redeemBody, now)
		req.Header.Set("Content-Type", "text/plain")
		wantAPI(t, e.send(req, redeemBody), 415, CodeUnsupportedMedia)
	})
	t.Run("unknown route", func(t *testing.T) {
		wantAPI(t, e.send(e.rawRequest(key(t, 2), "DELETE", "/channels/"+id, "", nil, now), nil), 404, CodeNotFound)
	})
	t.Run("expired channel", func(t *testing.T) {
		e.clock.Advance(time.Hour + testGrace + time.Second)
		_, err := payee.Redeem(ctx, id, 50, pre(t, ch, 50))
		wantCode(t, err, CodeExpired)
		cl, err := payer.Close(ctx, id) // anyone may close after expiry and grace
		if err != nil || cl.Refund != 97 {
			t.Fatalf("close after expiry: %+v %v", cl, err)
		}
	})
	if p := e.balance(payee); p != 3 {
		t.Fatalf("payee ends with %d, want 3", p)
	}
	e.audit(1<<63 - 1)
}

// TestConcurrentRedeem has many payee goroutines race to redeem one channel
// up to different indexes through the HTTP API: the payee ends with exactly
// the highest index's worth.
func TestConcurrentRedeem(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	payer, payee := e.registered(1, 10000), e.registered(2, 0)
	ch := chain(3, 200)
	open, err := payer.OpenChannel(ctx, "o", OpenRequest{Payee: payee.Account(), Root: ch.Root(), Length: 200, Unit: 7, Expiry: e.clock.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	// A Chain is not safe for concurrent use; derive the preimages first.
	pres := make([]identity.Digest, 151)
	for i := int64(1); i <= 150; i++ {
		pres[i] = pre(t, ch, i)
	}
	var wg sync.WaitGroup
	var paid atomic.Int64
	for g := range 8 {
		wg.Go(func() {
			for i := int64(g + 1); i <= 150; i += 8 {
				r, err := payee.Redeem(ctx, open.Channel.ID, i, pres[i])
				if err != nil {
					t.Error(err)
					return
				}
				paid.Add(r.Paid)
			}
		})
	}
	wg.Wait()
	if paid.Load() > 150*7 || e.balance(payee) != paid.Load() {
		t.Fatalf("paid %d in responses, balance %d", paid.Load(), e.balance(payee))
	}
	e.audit(10000)
}
