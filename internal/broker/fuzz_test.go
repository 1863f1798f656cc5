package broker

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"
)

// The request decoders face the internet: they must never panic, and what
// they accept must satisfy the invariants handlers rely on.

func FuzzDecodeOpenRequest(f *testing.F) {
	f.Add([]byte(`{"payee":"abc","root":"` + zeros64 + `","length":10,"unit":5,"expiry":"2030-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := DecodeOpenRequest(b)
		if err != nil {
			return
		}
		if req.Length <= 0 || req.Unit <= 0 || checkAccountID("payee", req.Payee) != nil || req.Expiry.IsZero() {
			t.Fatalf("accepted invalid request %+v", req)
		}
		roundTrip(t, req)
	})
}

func FuzzDecodeRedeemRequest(f *testing.F) {
	f.Add([]byte(`{"index":3,"preimage":"` + zeros64 + `"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := DecodeRedeemRequest(b)
		if err != nil {
			return
		}
		if req.Index <= 0 {
			t.Fatalf("accepted index %d", req.Index)
		}
		roundTrip(t, req)
	})
}

func FuzzDecodeRedemptionsRequest(f *testing.F) {
	f.Add([]byte(`{"redemptions":[{"channel":"c1","index":3,"preimage":"` + zeros64 + `","close":true},{"channel":"c2","close":true}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := DecodeRedemptionsRequest(b)
		if err != nil {
			return
		}
		if n := len(req.Redemptions); n == 0 || n > MaxRedemptions {
			t.Fatalf("accepted %d redemptions", n)
		}
		seen := map[string]bool{}
		for _, r := range req.Redemptions {
			if seen[r.Channel] || checkAccountID("channel", r.Channel) != nil || r.Index < 0 || (r.Index == 0 && !r.Close) {
				t.Fatalf("accepted %+v", r)
			}
			seen[r.Channel] = true
			roundTrip(t, r)
		}
	})
}

func FuzzDecodeMintRequest(f *testing.F) {
	f.Add([]byte(`{"account":"abc","amount":100}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := DecodeMintRequest(b)
		if err != nil {
			return
		}
		if req.Amount <= 0 || checkAccountID("account", req.Account) != nil {
			t.Fatalf("accepted invalid request %+v", req)
		}
		roundTrip(t, req)
	})
}

func FuzzDecodeComplaintRequest(f *testing.F) {
	f.Add([]byte(`{"account":"abc","info_hash":"0123456789abcdef0123456789abcdef01234567","owed":10,"paid":3,` +
		`"channels":[{"channel":"` + zeros64[:32] + `","index":3}],"reason":"unpaid"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := DecodeComplaintRequest(b)
		if err != nil {
			return
		}
		if checkAccountID("account", req.Account) != nil || !isLowerHex(req.InfoHash, 40) || req.Reason != ReasonUnpaid ||
			req.Paid < 0 || req.Owed <= req.Paid || req.Channels == nil || len(req.Channels) > MaxComplaintChannels {
			t.Fatalf("accepted invalid request %+v", req)
		}
		seen := map[string]bool{}
		for _, c := range req.Channels {
			if checkAccountID("channel", c.Channel) != nil || c.Index < 0 || seen[c.Channel] {
				t.Fatalf("accepted invalid channel claim %+v", c)
			}
			seen[c.Channel] = true
		}
		// What was accepted re-encodes to a body that decodes the same.
		again, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		req2, err := DecodeComplaintRequest(again)
		if err != nil || !reflect.DeepEqual(req, req2) {
			t.Fatalf("round trip of %s: %+v, %v", again, req2, err)
		}
	})
}

func FuzzParseComplaintsQuery(f *testing.F) {
	f.Add("account=abc&limit=10")
	f.Fuzz(func(t *testing.T, q string) {
		account, limit, err := parseComplaintsQuery(q)
		if err != nil {
			return
		}
		if limit < 1 || limit > MaxComplaintList || (account != "" && checkAccountID("account", account) != nil) {
			t.Fatalf("accepted %q as account %q limit %d", q, account, limit)
		}
	})
}

func FuzzDecodeRegisterRequest(f *testing.F) {
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = DecodeRegisterRequest(b)
		_, _ = DecodeCloseRequest(b)
	})
}

// FuzzParseAuthHeaders feeds arbitrary header values to the header parser.
func FuzzParseAuthHeaders(f *testing.F) {
	f.Add("00", "1700000000000", "00", "00", "k")
	f.Fuzz(func(t *testing.T, key, ts, nonce, sig, idem string) {
		h := http.Header{}
		h.Set(HeaderKey, key)
		h.Set(HeaderTimestamp, ts)
		h.Set(HeaderNonce, nonce)
		h.Set(HeaderSignature, sig)
		h.Set(HeaderIdempotency, idem)
		s, e := parseAuthHeaders(h)
		if e == nil && (s.ts <= 0 || (s.idemKey != "" && checkIdempotencyKey(s.idemKey) != nil)) {
			t.Fatalf("accepted bad headers: %+v", s)
		}
	})
}

// FuzzDecodeErrorResponse checks the client's error decoding of whatever a
// broker (or a proxy in front of it) might send.
func FuzzDecodeErrorResponse(f *testing.F) {
	f.Add(400, []byte(`{"code":"invalid","message":"x"}`))
	f.Fuzz(func(t *testing.T, status int, b []byte) {
		e := DecodeErrorResponse(status, b)
		if e.Code == "" || e.Status != status {
			t.Fatalf("bad decoded error %+v", e)
		}
		_ = e.Error()
		_ = e.Unwrap()
	})
}

const zeros64 = "0000000000000000000000000000000000000000000000000000000000000000"

// roundTrip checks that an accepted request re-encodes to JSON that decodes
// to the same value.
func roundTrip[T comparable](t *testing.T, v T) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("re-encode %+v: %v", v, err)
	}
	var w T
	if err := json.Unmarshal(b, &w); err != nil {
		t.Fatalf("decode re-encoded %s: %v", b, err)
	}
	if any(w) != any(v) {
		// time.Time loses its location and monotonic reading; compare the
		// JSON again instead.
		b2, _ := json.Marshal(w)
		if string(b2) != string(b) {
			t.Fatalf("round trip changed %s to %s", b, b2)
		}
	}
}
