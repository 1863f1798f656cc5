package identity

import (
	"bytes"
	"testing"
)

// The fuzzers check that decoders never panic and that whatever they accept
// re-encodes to the same bytes: one value, one encoding, so signatures over
// re-encoded values stay valid.

func FuzzCertificateUnmarshal(f *testing.F) {
	f.Add([]byte(certTag))
	f.Fuzz(func(t *testing.T, b []byte) {
		var c Certificate
		if err := c.UnmarshalBinary(b); err != nil {
			return
		}
		out, err := c.MarshalBinary()
		if err != nil {
			t.Fatalf("re-encode of accepted certificate: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", b, out)
		}
		_ = c.Verify(testKey(1).Public(), c.Issued)
	})
}

func FuzzVoucherUnmarshal(f *testing.F) {
	f.Add([]byte(voucherTag))
	f.Fuzz(func(t *testing.T, b []byte) {
		var v Voucher
		if err := v.UnmarshalBinary(b); err != nil {
			return
		}
		out, err := v.MarshalBinary()
		if err != nil {
			t.Fatalf("re-encode of accepted voucher: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", b, out)
		}
		_ = v.CheckFor(testKey(1).Public(), v.Payee, v.Expiry, 0)
	})
}

func FuzzDecodeKeyPEM(f *testing.F) {
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := DecodeKeyPEM(b)
		if err != nil {
			return
		}
		msg := []byte("probe")
		if !k.Public().Verify(msg, k.Sign(msg)) {
			t.Fatal("decoded key cannot verify its own signature")
		}
	})
}
