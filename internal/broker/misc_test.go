package broker

import (
	"context"
	"testing"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/identity"
	"github.com/floodgate-p2p/floodgate/internal/ledger"
)

func TestNonceCache(t *testing.T) {
	c := newNonceCache(2)
	k := func(b byte) nonceKey { return nonceKey{nonce: [NonceSize]byte{b}} }
	if fresh, full := c.add(k(1), 1000, 0); !fresh || full {
		t.Fatal("first nonce refused")
	}
	if fresh, _ := c.add(k(1), 1000, 10); fresh {
		t.Fatal("replayed nonce accepted")
	}
	c.add(k(2), 1000, 20)
	if _, full := c.add(k(3), 1000, 30); !full {
		t.Fatal("cache over its cap")
	}
	// Once the window has passed, entries expire and room returns.
	if fresh, full := c.add(k(3), 5000, 2000); !fresh || full {
		t.Fatalf("after expiry: fresh=%v full=%v", fresh, full)
	}
	if c.len() != 1 {
		t.Fatalf("%d entries after sweep, want 1", c.len())
	}
}

func TestExpirerReturnsLockedFunds(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	payer, payee := e.registered(1, 100), e.registered(2, 0)
	open, err := payer.OpenChannel(ctx, "o", OpenRequest{Payee: payee.Account(), Root: chain(1, 10).Root(), Length: 10, Unit: 10, Expiry: e.clock.Now().Add(2 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2*time.Minute + testGrace + time.Second)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.srv.RunExpirer(runCtx, 5*time.Millisecond) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := e.srv.cfg.Ledger.Channel(ctx, open.Channel.ID)
		if err != nil {
			t.Fatal(err)
		}
		if st.State == ledger.StateClosed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("expired channel never closed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("RunExpirer returned %v", err)
	}
	if got := e.balance(payer); got != 100 {
		t.Fatalf("payer balance %d after expiry, want 100", got)
	}
	e.audit(100)
}

func TestProviderCannotRegister(t *testing.T) {
	e := newEnv(t)
	_, err := e.client(e.provider).Register(context.Background())
	wantCode(t, err, CodeForbidden)
}

func TestNewServerValidates(t *testing.T) {
	if _, err := NewServer(Config{}); err == nil {
		t.Fatal("empty config accepted")
	}
	var seed [32]byte
	k := identity.NewKeyFromSeed(seed)
	if _, err := NewServer(Config{Ledger: ledger.New(nil, ledger.Config{}), ProviderKey: k, MinChannelLifetime: time.Hour, MaxChannelLifetime: time.Minute}); err == nil {
		t.Fatal("inverted channel lifetimes accepted")
	}
	if _, err := NewClient(ClientConfig{BaseURL: "ftp://x", Key: k}); err == nil {
		t.Fatal("ftp base URL accepted")
	}
	if _, err := NewClient(ClientConfig{BaseURL: "http://x", Key: k, ProviderKey: nil}); err != nil {
		t.Fatal(err)
	}
}

func TestRateLimitPerKey(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	payee := e.registered(2, 0)
	e.srv.limiter = newKeyLimiter(0.001, 2, 2)
	c, err := NewClient(ClientConfig{BaseURL: e.http.URL, Key: key(t, 2), Now: e.clock.Now, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := c.Balance(ctx, payee.Account()); err != nil {
			t.Fatal(err)
		}
	}
	_, err = c.Balance(ctx, payee.Account())
	wantCode(t, err, CodeRateLimited)
	// Other keys have their own buckets, and the provider is exempt.
	if _, err := e.client(key(t, 3)).Register(ctx); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := e.client(e.provider).Balance(ctx, payee.Account()); err != nil {
			t.Fatal(err)
		}
	}
	// The limiter's table is full (two keys, both recently active): a new
	// key is refused rather than growing it.
	_, err = e.client(key(t, 4)).Register(ctx)
	wantCode(t, err, CodeRateLimited)
}
