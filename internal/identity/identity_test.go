package identity

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func testKey(b byte) *PrivateKey {
	var seed [32]byte
	seed[0] = b
	return NewKeyFromSeed(seed)
}

func TestAccountIDIsStableAndDistinct(t *testing.T) {
	a, b := testKey(1), testKey(2)
	if a.AccountID() != AccountIDOf(a.Public()) || len(a.AccountID()) != AccountIDLen {
		t.Fatalf("bad account id %q", a.AccountID())
	}
	if a.AccountID() == b.AccountID() {
		t.Fatal("two keys share an account id")
	}
	if err := checkID("account", a.AccountID()); err != nil {
		t.Fatal(err)
	}
}

func TestTextForms(t *testing.T) {
	k := testKey(3)
	p, err := ParsePublicKey(k.Public().String())
	if err != nil || p != k.Public() {
		t.Fatalf("round trip: %v %v", p, err)
	}
	for _, bad := range []string{"", "00", k.Public().String() + "00", "zz" + k.Public().String()[2:]} {
		if _, err := ParsePublicKey(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParsePublicKey(%q) = %v, want ErrMalformed", bad, err)
		}
	}
	var s Signature
	if err := s.UnmarshalText([]byte("12")); !errors.Is(err, ErrMalformed) {
		t.Errorf("short signature accepted: %v", err)
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "key")
	k := testKey(4)
	if err := WriteKeyFile(path, k); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	if err := WriteKeyFile(path, testKey(5)); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("overwrite: %v, want ErrExist", err)
	}
	got, err := ReadKeyFile(path)
	if err != nil || got.Public() != k.Public() {
		t.Fatalf("read back: %v", err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadKeyFile(path); !errors.Is(err, ErrKeyPermissions) {
		t.Fatalf("world-readable key accepted: %v", err)
	}
	if _, _, err := LoadOrCreateKeyFile(path); !errors.Is(err, ErrKeyPermissions) {
		t.Fatalf("LoadOrCreate of a bad file: %v", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	got, created, err := LoadOrCreateKeyFile(path)
	if err != nil || created || got.Public() != k.Public() {
		t.Fatalf("LoadOrCreate existing: %v %v", created, err)
	}
	other := filepath.Join(dir, "new")
	n1, created, err := LoadOrCreateKeyFile(other)
	if err != nil || !created {
		t.Fatalf("LoadOrCreate new: %v %v", created, err)
	}
	n2, created, err := LoadOrCreateKeyFile(other)
	if err != nil || created || n1.Public() != n2.Public() {
		t.Fatalf("second LoadOrCreate: %v %v", created, err)
	}
	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(garbage, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadKeyFile(garbage); !errors.Is(err, ErrMalformed) {
		t.Fatalf("garbage key: %v", err)
	}
}

func TestCertificate(t *testing.T) {
	provider, peer := testKey(10), testKey(11)
	now := time.Unix(1_700_000_000, 0)
	c, err := IssueCertificate(provider, peer.Public(), peer.AccountID(), now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Verify(provider.Public(), now); err != nil {
		t.Fatal(err)
	}
	if err := c.Verify(provider.Public(), now.Add(time.Hour)); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired cert: %v", err)
	}
	if err := c.Verify(peer.Public(), now); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("wrong issuer: %v", err)
	}
	for name, mutate := range map[string]func(*Certificate){
		"account": func(c *Certificate) { c.Account = testKey(12).AccountID() },
		"key":     func(c *Certificate) { c.Key = testKey(12).Public() },
		"expiry":  func(c *Certificate) { c.Expiry = c.Expiry.Add(time.Second) },
		"issued":  func(c *Certificate) { c.Issued = c.Issued.Add(-time.Second) },
		"sig":     func(c *Certificate) { c.Signature[0] ^= 1 },
	} {
		m := c
		mutate(&m)
		if err := m.Verify(provider.Public(), now); !errors.Is(err, ErrBadSignature) {
			t.Errorf("tampered %s accepted: %v", name, err)
		}
	}
	bin, err := c.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var d Certificate
	if err := d.UnmarshalBinary(bin); err != nil {
		t.Fatal(err)
	}
	if err := d.Verify(provider.Public(), now); err != nil {
		t.Fatalf("binary round trip: %v", err)
	}
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var j Certificate
	if err := json.Unmarshal(js, &j); err != nil {
		t.Fatal(err)
	}
	if err := j.Verify(provider.Public(), now); err != nil {
		t.Fatalf("JSON round trip: %v (%s)", err, js)
	}
	cf := filepath.Join(t.TempDir(), "c.cert")
	if err := WriteCertificateFile(cf, c); err != nil {
		t.Fatal(err)
	}
	if fc, err := ReadCertificateFile(cf); err != nil || fc.Verify(provider.Public(), now) != nil {
		t.Fatalf("certificate file round trip: %v", err)
	}
	if err := os.WriteFile(cf, []byte(`{"account": ""}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadCertificateFile(cf); err == nil {
		t.Fatal("certificate without account accepted")
	}
	if err := d.UnmarshalBinary(bin[:len(bin)-1]); !errors.Is(err, ErrMalformed) {
		t.Fatalf("truncated: %v", err)
	}
	if err := d.UnmarshalBinary(append(bin, 0)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("trailing: %v", err)
	}
	if _, err := IssueCertificate(provider, peer.Public(), "bad id", now, now.Add(time.Hour)); err == nil {
		t.Fatal("space in account accepted")
	}
	if _, err := IssueCertificate(provider, peer.Public(), "x", now, now); err == nil {
		t.Fatal("empty validity accepted")
	}
}

// TestDomainSeparation checks that a certificate signature cannot pass as a
// voucher signature, whatever the field contents.
func TestDomainSeparation(t *testing.T) {
	provider := testKey(20)
	now := time.Unix(1_700_000_000, 0)
	c, _ := IssueCertificate(provider, testKey(21).Public(), "acct", now, now.Add(time.Hour))
	v := Voucher{Channel: "c", Payer: "p", Payee: "q", Length: 1, Unit: 1, Expiry: now, Signature: c.Signature}
	if err := v.Verify(provider.Public()); !errors.Is(err, ErrBadSignature) {
		t.Fatal("certificate signature verified as a voucher")
	}
	if bytes.HasPrefix(c.signedBytes(), []byte(voucherTag)) {
		t.Fatal("tags overlap")
	}
}

func testVoucher(t *testing.T, provider *PrivateKey, now time.Time) Voucher {
	t.Helper()
	v, err := SignVoucher(provider, Voucher{
		Channel: "ch-1", Payer: testKey(31).AccountID(), Payee: testKey(32).AccountID(),
		Root: Digest{1, 2, 3}, Length: 1000, Unit: 7, Expiry: now.Add(time.Hour + 500*time.Millisecond),
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVoucher(t *testing.T) {
	provider := testKey(30)
	now := time.Unix(1_700_000_000, 0)
	v := testVoucher(t, provider, now)
	if v.Expiry != now.Add(time.Hour).UTC() {
		t.Fatalf("expiry not truncated to seconds: %v", v.Expiry)
	}
	if err := v.Verify(provider.Public()); err != nil {
		t.Fatal(err)
	}
	if val, err := v.Value(); err != nil || val != 7000 {
		t.Fatalf("Value = %d, %v", val, err)
	}
	if err := v.CheckFor(provider.Public(), v.Payee, now, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := v.CheckFor(provider.Public(), v.Payer, now, time.Minute); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("voucher for another payee accepted: %v", err)
	}
	if err := v.CheckFor(provider.Public(), v.Payee, now.Add(59*time.Minute+1), time.Minute); !errors.Is(err, ErrExpired) {
		t.Fatalf("nearly expired voucher accepted: %v", err)
	}
	for name, mutate := range map[string]func(*Voucher){
		"channel": func(v *Voucher) { v.Channel = "ch-2" },
		"payer":   func(v *Voucher) { v.Payer = v.Payee },
		"payee":   func(v *Voucher) { v.Payee = v.Payer },
		"root":    func(v *Voucher) { v.Root[31] = 9 },
		"length":  func(v *Voucher) { v.Length++ },
		"unit":    func(v *Voucher) { v.Unit++ },
		"expiry":  func(v *Voucher) { v.Expiry = v.Expiry.Add(time.Second) },
		"sig":     func(v *Voucher) { v.Signature[63] ^= 0x80 },
	} {
		m := v
		mutate(&m)
		if err := m.Verify(provider.Public()); !errors.Is(err, ErrBadSignature) {
			t.Errorf("tampered %s accepted: %v", name, err)
		}
	}
	bin, err := v.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var d Voucher
	if err := d.UnmarshalBinary(bin); err != nil || d != v {
		t.Fatalf("binary round trip: %v\n%+v\n%+v", err, d, v)
	}
	js, _ := json.Marshal(v)
	var j Voucher
	if err := json.Unmarshal(js, &j); err != nil || j.Verify(provider.Public()) != nil {
		t.Fatalf("JSON round trip failed: %v %s", err, js)
	}
	for _, bad := range []Voucher{
		{Channel: "c", Payer: "p", Payee: "q", Length: 0, Unit: 1, Expiry: now},
		{Channel: "c", Payer: "p", Payee: "q", Length: 1, Unit: -1, Expiry: now},
		{Channel: "c", Payer: "p", Payee: "q", Length: 1 << 40, Unit: 1 << 40, Expiry: now},
		{Channel: "", Payer: "p", Payee: "q", Length: 1, Unit: 1, Expiry: now},
		{Channel: "c", Payer: "p", Payee: "q", Length: 1, Unit: 1, Expiry: time.Unix(-1, 0)},
	} {
		if _, err := SignVoucher(provider, bad); err == nil {
			t.Errorf("SignVoucher(%+v) accepted", bad)
		}
	}
}
