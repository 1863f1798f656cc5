package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/identity"
	"github.com/floodgate-p2p/floodgate/internal/provider"
	"github.com/floodgate-p2p/floodgate/internal/testport"
)

// freeAddr returns a loopback address that is free now (see testport).
func freeAddr(t *testing.T) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(testport.Free(t)))
}

// runCmd runs one of this file's cobra commands in-process.
func runCmd(t *testing.T, ctx context.Context, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	// The commands may not be wired into the root yet; add them if absent.
	if c, _, err := root.Find([]string{"account"}); err != nil || c == root {
		root.AddCommand(newAccountCmd(), newMintCmd(), newProviderCmd())
	}
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

func TestProviderAccountMintCommands(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := runCmd(t, ctx, "provider", "--listen", addr, "--data-dir", filepath.Join(dir, "prov"))
		done <- err
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("provider exited with %v", err)
		}
	}()
	base := "http://" + addr
	waitHealthy(t, base)

	st, err := os.Stat(filepath.Join(dir, "prov", provider.KeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("provider key: %v %v", st, err)
	}
	keyFile := filepath.Join(dir, "me", "id.key")
	out, err := runCmd(t, ctx, "account", "new", "--key", keyFile)
	if err != nil || !strings.Contains(out, "account:") {
		t.Fatalf("account new: %q %v", out, err)
	}
	if _, err := runCmd(t, ctx, "account", "new", "--key", keyFile); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("account new over an existing key: %v", err)
	}
	k, err := identity.ReadKeyFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if out, err = runCmd(t, ctx, "account", "register", "--key", keyFile, "--broker", base); err != nil {
		t.Fatalf("register: %q %v", out, err)
	}
	provKey := filepath.Join(dir, "prov", provider.KeyFile)
	pk, err := identity.ReadKeyFile(provKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := identity.ReadCertificateFile(keyFile + ".cert")
	if err != nil || cert.Verify(pk.Public(), time.Now()) != nil || cert.Key != k.Public() || cert.Account != k.AccountID() {
		t.Fatalf("saved certificate %+v: %v", cert, err)
	}
	for range 2 { // the same idempotency key twice mints once
		if out, err = runCmd(t, ctx, "mint", "--provider-key", provKey, "--broker", base, "--idempotency-key", "invoice-7", k.AccountID(), "250"); err != nil {
			t.Fatalf("mint: %q %v", out, err)
		}
	}
	if _, err := runCmd(t, ctx, "mint", "--provider-key", keyFile, "--broker", base, k.AccountID(), "1"); err == nil {
		t.Fatal("a customer key minted money")
	}
	if _, err := runCmd(t, ctx, "mint", "--provider-key", provKey, "--broker", base, k.AccountID(), "-5"); err == nil {
		t.Fatal("negative mint accepted")
	}
	out, err = runCmd(t, ctx, "account", "balance", "--key", keyFile, "--broker", base)
	if err != nil || strings.TrimSpace(out) != "250" {
		t.Fatalf("balance: %q %v", out, err)
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(body, []byte("floodgate_broker_requests_total")) {
		t.Fatal("metrics lack broker counters")
	}
	resp, err = http.Get(base + "/announce")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		t.Fatal("tracker not mounted at /announce")
	}
}

func waitHealthy(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("provider did not become healthy")
}
