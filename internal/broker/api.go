package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/identity"
	"github.com/floodgate-p2p/floodgate/internal/ledger"
)

// The API's request and response bodies. Binary values (keys, roots,
// preimages, signatures) are lowercase hex; times are RFC 3339; amounts are
// integers in the smallest unit. docs/broker.md is the reference.

// APIPrefix is the path under which the broker serves its API.
const APIPrefix = "/broker/v1"

// DefaultMaxBodyBytes bounds request bodies; the largest legitimate request
// (open) is a few hundred bytes.
const DefaultMaxBodyBytes = 8 << 10

// RegisterRequest is the body of POST /broker/v1/register. It is empty: the
// signature headers carry the key being registered and prove its owner sent
// the request.
type RegisterRequest struct{}

// RegisterResponse returns the caller's account and its certificate.
type RegisterResponse struct {
	Account     string               `json:"account"`
	Certificate identity.Certificate `json:"certificate"`
}

// BalanceResponse is the body of GET /broker/v1/accounts/{id}.
type BalanceResponse struct {
	Account string `json:"account"`
	Balance int64  `json:"balance"`
}

// MintRequest is the body of POST /broker/v1/mint (provider key only).
type MintRequest struct {
	Account string `json:"account"`
	Amount  int64  `json:"amount"`
}

// MintResponse confirms a mint.
type MintResponse struct {
	Account string `json:"account"`
	Amount  int64  `json:"amount"`
}

// OpenRequest is the body of POST /broker/v1/channels. The caller is the
// payer.
type OpenRequest struct {
	Payee  string          `json:"payee"`
	Root   identity.Digest `json:"root"`
	Length int64           `json:"length"`
	Unit   int64           `json:"unit"`
	Expiry time.Time       `json:"expiry"`
}

// ChannelStatus is the public state of a channel.
type ChannelStatus struct {
	ID       string          `json:"id"`
	Payer    string          `json:"payer"`
	Payee    string          `json:"payee"`
	Root     identity.Digest `json:"root"`
	Length   int64           `json:"length"`
	Unit     int64           `json:"unit"`
	Expiry   time.Time       `json:"expiry"`
	Redeemed int64           `json:"redeemed"`
	State    string          `json:"state"`
}

// ChannelResponse is returned by open and by GET /broker/v1/channels/{id}:
// the channel and the broker's voucher for it.
type ChannelResponse struct {
	Channel ChannelStatus    `json:"channel"`
	Voucher identity.Voucher `json:"voucher"`
}

// RedeemRequest is the body of POST /broker/v1/channels/{id}/redeem. The
// caller must be the payee.
type RedeemRequest struct {
	Index    int64           `json:"index"`
	Preimage identity.Digest `json:"preimage"`
}

// RedeemResponse says how much this call paid (zero for a repeat or a lower
// index) and the channel's highest redeemed index afterwards.
type RedeemResponse struct {
	Channel  string `json:"channel"`
	Paid     int64  `json:"paid"`
	Redeemed int64  `json:"redeemed"`
}

// MaxRedemptions is the most channels one POST /broker/v1/redemptions may
// settle (32 fit well inside DefaultMaxBodyBytes).
const MaxRedemptions = 32

// RedemptionsRequest is the body of POST /broker/v1/redemptions: several
// channels the caller is the payee of, settled in one round trip. A payee
// that earned on many channels redeems them all at once instead of one
// request each.
type RedemptionsRequest struct {
	Redemptions []Redemption `json:"redemptions"`
}

// Redemption is one channel of a RedemptionsRequest: redeemed up to Index
// with Preimage when Index is positive, then closed when Close is set. At
// least one of the two is asked for; a channel appears once per request.
type Redemption struct {
	Channel  string          `json:"channel"`
	Index    int64           `json:"index,omitempty"`
	Preimage identity.Digest `json:"preimage,omitzero"`
	Close    bool            `json:"close,omitempty"`
}

// RedemptionsResponse has a result for every redemption, in the request's
// order. The call succeeds as a whole when the request was well formed;
// each channel succeeds or fails on its own.
type RedemptionsResponse struct {
	Results []RedemptionResult `json:"results"`
}

// RedemptionResult is what became of one channel: what the redemption paid
// and the channel's redeemed index afterwards (a lower bound, as with
// RedeemResponse; 0 when only a close was asked for), and whether it was
// closed with what refund. Error, when
// set, says why the channel was left as it was; a channel whose redemption
// failed is not closed, so no payment it carried goes back to the payer.
type RedemptionResult struct {
	Channel  string `json:"channel"`
	Paid     int64  `json:"paid"`
	Redeemed int64  `json:"redeemed"`
	Closed   bool   `json:"closed,omitempty"`
	Refund   int64  `json:"refund,omitempty"`
	Error    *Error `json:"error,omitempty"`
}

// CloseRequest is the body of POST /broker/v1/channels/{id}/close.
type CloseRequest struct{}

// CloseResponse says how much the close returned to the payer. Repeating a
// close reports the same refund without moving money again.
type CloseResponse struct {
	Channel string `json:"channel"`
	Refund  int64  `json:"refund"`
}

// AuditResponse is the body of GET /broker/v1/audit (provider key only).
type AuditResponse struct {
	Minted        int64 `json:"minted"`
	SumOfBalances int64 `json:"sum_of_balances"`
	Conserved     bool  `json:"conserved"`
}

// errTrailing is returned for a body with more than one JSON value.
var errTrailing = errors.New("trailing data after the JSON value")

// decodeStrict decodes exactly one JSON value into v, refusing unknown
// fields and trailing data: a typo in a field name must not silently become
// a zero amount.
func decodeStrict(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errTrailing
	}
	return nil
}

// DecodeRegisterRequest reads a register body: exactly "{}" (whitespace
// allowed); an empty body is accepted too.
func DecodeRegisterRequest(body []byte) (RegisterRequest, error) {
	var req RegisterRequest
	if len(bytes.TrimSpace(body)) == 0 {
		return req, nil
	}
	if err := decodeStrict(bytes.NewReader(body), &req); err != nil {
		return req, fmt.Errorf("register request: %w", err)
	}
	return req, nil
}

// DecodeCloseRequest reads a close body, which like register is empty.
func DecodeCloseRequest(body []byte) (CloseRequest, error) {
	_, err := DecodeRegisterRequest(body)
	if err != nil {
		return CloseRequest{}, fmt.Errorf("close request: %w", errors.Unwrap(err))
	}
	return CloseRequest{}, nil
}

// DecodeMintRequest reads and validates a mint body.
func DecodeMintRequest(body []byte) (MintRequest, error) {
	var req MintRequest
	if err := decodeStrict(bytes.NewReader(body), &req); err != nil {
		return MintRequest{}, fmt.Errorf("mint request: %w", err)
	}
	if err := checkAccountID("account", req.Account); err != nil {
		return MintRequest{}, err
	}
	if req.Amount <= 0 {
		return MintRequest{}, fmt.Errorf("%w: mint amount %d must be positive", ledger.ErrInvalid, req.Amount)
	}
	return req, nil
}

// DecodeOpenRequest reads and validates an open body. It checks shape only;
// limits that depend on configuration or the clock are the server's.
func DecodeOpenRequest(body []byte) (OpenRequest, error) {
	var req OpenRequest
	if err := decodeStrict(bytes.NewReader(body), &req); err != nil {
		return OpenRequest{}, fmt.Errorf("open request: %w", err)
	}
	if err := checkAccountID("payee", req.Payee); err != nil {
		return OpenRequest{}, err
	}
	if req.Length <= 0 || req.Unit <= 0 {
		return OpenRequest{}, fmt.Errorf("%w: length %d and unit %d must be positive", ledger.ErrInvalid, req.Length, req.Unit)
	}
	if req.Expiry.IsZero() {
		return OpenRequest{}, fmt.Errorf("%w: expiry is required", ledger.ErrInvalid)
	}
	return req, nil
}

// DecodeRedeemRequest reads and validates a redeem body.
func DecodeRedeemRequest(body []byte) (RedeemRequest, error) {
	var req RedeemRequest
	if err := decodeStrict(bytes.NewReader(body), &req); err != nil {
		return RedeemRequest{}, fmt.Errorf("redeem request: %w", err)
	}
	if req.Index <= 0 {
		return RedeemRequest{}, fmt.Errorf("%w: index %d must be positive", ledger.ErrInvalid, req.Index)
	}
	return req, nil
}

// DecodeRedemptionsRequest reads and validates a redemptions body: 1 to
// MaxRedemptions channels, each named once, each redeemed (a positive
// index) or closed or both.
func DecodeRedemptionsRequest(body []byte) (RedemptionsRequest, error) {
	var req RedemptionsRequest
	if err := decodeStrict(bytes.NewReader(body), &req); err != nil {
		return RedemptionsRequest{}, fmt.Errorf("redemptions request: %w", err)
	}
	if n := len(req.Redemptions); n == 0 || n > MaxRedemptions {
		return RedemptionsRequest{}, fmt.Errorf("%w: %d redemptions, want 1..%d", ledger.ErrInvalid, n, MaxRedemptions)
	}
	seen := make(map[string]bool, len(req.Redemptions))
	for _, r := range req.Redemptions {
		if err := checkAccountID("channel id", r.Channel); err != nil {
			return RedemptionsRequest{}, err
		}
		if seen[r.Channel] {
			return RedemptionsRequest{}, fmt.Errorf("%w: channel %s named twice", ledger.ErrInvalid, r.Channel)
		}
		seen[r.Channel] = true
		switch {
		case r.Index < 0:
			return RedemptionsRequest{}, fmt.Errorf("%w: channel %s: index %d is negative", ledger.ErrInvalid, r.Channel, r.Index)
		case r.Index == 0 && r.Preimage != (identity.Digest{}):
			return RedemptionsRequest{}, fmt.Errorf("%w: channel %s: a preimage without an index", ledger.ErrInvalid, r.Channel)
		case r.Index == 0 && !r.Close:
			return RedemptionsRequest{}, fmt.Errorf("%w: channel %s: neither an index to redeem nor close", ledger.ErrInvalid, r.Channel)
		}
	}
	return req, nil
}

// checkAccountID validates an account id from a request: printable ASCII
// without spaces or slashes, at most 128 bytes (the limit of the signed
// encodings), so it is safe in a URL path and a voucher.
func checkAccountID(what, s string) error {
	if len(s) == 0 || len(s) > 128 {
		return fmt.Errorf("%w: %s must be 1..128 bytes", ledger.ErrInvalid, what)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' || c == '/' || c == '?' || c == '#' || c == '%' {
			return fmt.Errorf("%w: %s contains byte %#x", ledger.ErrInvalid, what, c)
		}
	}
	return nil
}

func statusOf(c ledger.Channel) ChannelStatus {
	return ChannelStatus{
		ID: c.ID, Payer: string(c.Payer), Payee: string(c.Payee), Root: identity.Digest(c.Root),
		Length: c.Length, Unit: c.Unit, Expiry: c.Expiry.UTC(), Redeemed: c.Redeemed, State: c.State,
	}
}
