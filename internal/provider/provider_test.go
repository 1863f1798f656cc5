package provider

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/floodgate-p2p/floodgate/internal/ledger"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestProviderServesHealthMetricsTrackerAndBroker(t *testing.T) {
	dir := t.TempDir()
	p, err := Start(context.Background(), Config{Listen: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if !p.KeyCreated() {
		t.Fatal("first start must create the key")
	}
	if code, body := get(t, p.URL()+"/healthz"); code != 200 || !strings.Contains(body, "ok") {
		t.Fatalf("healthz: %d %q", code, body)
	}
	if code, body := get(t, p.URL()+"/metrics"); code != 200 || !strings.Contains(body, "floodgate_tracker_peers") || !strings.Contains(body, "floodgate_broker_") {
		t.Fatalf("metrics: %d, missing tracker or broker metrics", code)
	}
	if code, body := get(t, p.AnnounceURL()+"?info_hash=short"); code != 200 || !strings.Contains(body, "failure reason") {
		t.Fatalf("announce with a bad info hash: %d %q", code, body)
	}
	// The provider's own account exists and the empty ledger is conserved.
	if _, err := p.Ledger().Balance(context.Background(), ledger.AccountID(p.Account())); err != nil {
		t.Fatal(err)
	}
	if minted, sum, err := p.Ledger().Audit(context.Background()); err != nil || minted != 0 || sum != 0 {
		t.Fatalf("audit: %d %d %v", minted, sum, err)
	}
	cert, err := p.Certificate(0)
	if err == nil {
		t.Fatalf("a certificate with no validity was issued: %+v", cert)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	// Second start: same key, same ledger.
	p2, err := Start(context.Background(), Config{Listen: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	if p2.KeyCreated() || p2.Account() != p.Account() {
		t.Fatal("restart must reuse the key")
	}
}
