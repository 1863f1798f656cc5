package broker

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/floodgate-p2p/floodgate/internal/hashchain"
	"github.com/floodgate-p2p/floodgate/internal/identity"
)

// ClientConfig configures a Client.
type ClientConfig struct {
	// BaseURL is the provider's URL, e.g. "http://127.0.0.1:7070". A
	// trailing "/broker" is accepted and ignored. Required.
	BaseURL string
	// Key signs every request. Required.
	Key *identity.PrivateKey
	// ProviderKey, when set, makes the client check the signatures of the
	// certificates and vouchers it receives, so a forged broker response
	// is an error rather than a promise.
	ProviderKey *identity.PublicKey
	// HTTPClient sends the requests. Defaults to a client with a 15 s
	// timeout.
	HTTPClient *http.Client
	// MaxAttempts is how many times one call is tried. Defaults to 4.
	MaxAttempts int
	// Backoff is the pause before the first retry; it doubles per retry up
	// to 2 s. Defaults to 100 ms.
	Backoff time.Duration
	// Now is the clock used for request timestamps. Defaults to time.Now.
	Now func() time.Time
	// Registerer receives the client's metrics; nil leaves them
	// unregistered.
	Registerer prometheus.Registerer
}

// Client calls the broker API. It is safe for concurrent use.
//
// Calls are retried after network errors and 5xx responses, each attempt
// signed afresh (new timestamp and nonce) but with the same Idempotency-Key,
// so a retry after a lost response never moves money twice.
type Client struct {
	cfg     ClientConfig
	base    *url.URL
	metrics *clientMetrics
}

// maxResponseBytes bounds what the client reads from the broker.
const maxResponseBytes = 1 << 20

// NewClient validates cfg and returns a client.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Key == nil {
		return nil, errors.New("broker: ClientConfig.Key is required")
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("broker: base URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("broker: base URL %q must be http(s)://host[:port]", cfg.BaseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("broker: base URL %q must not have a query or fragment", cfg.BaseURL)
	}
	u.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/broker")
	u.RawPath = ""
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 15 * time.Second}
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 4
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 100 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m, err := newClientMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("broker: client metrics: %w", err)
	}
	return &Client{cfg: cfg, base: u, metrics: m}, nil
}

// Account returns the account id of the client's key.
func (c *Client) Account() string { return c.cfg.Key.AccountID() }

// CloseIdleConnections closes the client's idle connections to the
// broker. Call it when done: a connection dialed for a request that then
// went out on another one may never have carried a request, and a broker
// shutting down gracefully waits seconds for such a connection.
func (c *Client) CloseIdleConnections() { c.cfg.HTTPClient.CloseIdleConnections() }

// NewIdempotencyKey returns a fresh random idempotency key. Generate one per
// logical operation and reuse it for every retry of that operation, even
// across process restarts if the outcome is unknown.
func NewIdempotencyKey() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on supported platforms; a key from
		// the clock still keeps distinct operations apart.
		return fmt.Sprintf("t%x", time.Now().UnixNano())
	}
	return hex.EncodeToString(b[:])
}

// Register registers the client's key (idempotently) and returns its
// account and a fresh certificate.
func (c *Client) Register(ctx context.Context) (RegisterResponse, error) {
	var resp RegisterResponse
	err := c.do(ctx, "register", http.MethodPost, "/register", "", RegisterRequest{}, &resp)
	if err == nil && c.cfg.ProviderKey != nil {
		if err = resp.Certificate.Verify(*c.cfg.ProviderKey, c.cfg.Now()); err == nil && resp.Certificate.Key != c.cfg.Key.Public() {
			err = fmt.Errorf("broker: certificate is for key %s, not ours", resp.Certificate.Key)
		}
	}
	return resp, err
}

// Balance returns an account's balance (the client's own, or any account
// when the client holds the provider key).
func (c *Client) Balance(ctx context.Context, account string) (int64, error) {
	if err := checkAccountID("account", account); err != nil {
		return 0, err
	}
	var resp BalanceResponse
	err := c.do(ctx, "balance", http.MethodGet, "/accounts/"+account, "", nil, &resp)
	return resp.Balance, err
}

// Mint credits amount to account (provider key only). Reusing idemKey for
// a mint that already happened succeeds without minting again.
func (c *Client) Mint(ctx context.Context, idemKey, account string, amount int64) error {
	var resp MintResponse
	return c.do(ctx, "mint", http.MethodPost, "/mint", idemKey, MintRequest{Account: account, Amount: amount}, &resp)
}

// OpenChannel locks req.Length×req.Unit of the client's money for
// req.Payee and returns the channel with its voucher. Retrying with the same
// idemKey returns the same channel.
func (c *Client) OpenChannel(ctx context.Context, idemKey string, req OpenRequest) (ChannelResponse, error) {
	var resp ChannelResponse
	err := c.do(ctx, "open", http.MethodPost, "/channels", idemKey, req, &resp)
	if err == nil {
		err = c.checkVoucher(resp)
	}
	return resp, err
}

// Channel returns a channel's state and voucher.
func (c *Client) Channel(ctx context.Context, id string) (ChannelResponse, error) {
	if err := checkAccountID("channel id", id); err != nil {
		return ChannelResponse{}, err
	}
	var resp ChannelResponse
	err := c.do(ctx, "channel", http.MethodGet, "/channels/"+id, "", nil, &resp)
	if err == nil {
		err = c.checkVoucher(resp)
	}
	return resp, err
}

func (c *Client) checkVoucher(resp ChannelResponse) error {
	if c.cfg.ProviderKey == nil {
		return nil
	}
	return resp.Voucher.Verify(*c.cfg.ProviderKey)
}

// Redeem pays the client (the payee) for the chain up to index. It is
// naturally idempotent: a repeat pays nothing more.
//
// The broker caps how far one redemption may advance a channel (the
// ledger's MaxStep). When index is further than that from what the ledger
// has redeemed, Redeem splits the advance into steps the broker accepts:
// holding w_index it derives the earlier elements itself by hashing (at
// most one pass down the chain, on the payee's CPU) and redeems them in
// increasing order. The response then sums what every step paid.
func (c *Client) Redeem(ctx context.Context, channelID string, index int64, preimage identity.Digest) (RedeemResponse, error) {
	if err := checkAccountID("channel id", channelID); err != nil {
		return RedeemResponse{}, err
	}
	resp, err := c.redeemOnce(ctx, channelID, index, preimage)
	var ae *Error
	if err == nil || !errors.As(err, &ae) || ae.Code != CodeStepTooLong || ae.MaxStep < 1 {
		return resp, err
	}
	return c.redeemInSteps(ctx, channelID, index, preimage, ae.MaxStep, err)
}

func (c *Client) redeemOnce(ctx context.Context, channelID string, index int64, preimage identity.Digest) (RedeemResponse, error) {
	var resp RedeemResponse
	err := c.do(ctx, "redeem", http.MethodPost, "/channels/"+channelID+"/redeem", "", RedeemRequest{Index: index, Preimage: preimage}, &resp)
	return resp, err
}

// maxRedeemSteps bounds how many redemptions one Redeem call splits into,
// so a broker announcing an absurdly small max_step cannot make the client
// send a flood of requests.
const maxRedeemSteps = 1024

// redeemInSteps redeems up to index in advances of at most maxStep,
// starting from the channel's current redeemed index. tooLong is the
// broker's refusal of the single redemption, returned if splitting is not
// possible.
func (c *Client) redeemInSteps(ctx context.Context, channelID string, index int64, preimage identity.Digest, maxStep int64, tooLong error) (RedeemResponse, error) {
	st, err := c.Channel(ctx, channelID)
	if err != nil {
		return RedeemResponse{}, fmt.Errorf("broker: redeem in steps: %w", err)
	}
	from := st.Channel.Redeemed
	total := RedeemResponse{Channel: channelID, Redeemed: from}
	if index <= from || index > st.Channel.Length {
		// Redeemed meanwhile, or not a valid index at all: one plain
		// redemption gives the broker's answer.
		return c.redeemOnce(ctx, channelID, index, preimage)
	}
	if index-from > hashchain.MaxLength || (index-from-1)/maxStep >= maxRedeemSteps {
		return RedeemResponse{}, tooLong
	}
	// The intermediate targets, from+maxStep, from+2·maxStep, ... below
	// index, and their preimages from one walk down from index.
	var targets []int64
	for t := from + maxStep; t < index; t += maxStep {
		targets = append(targets, t)
	}
	pres := make([]identity.Digest, len(targets))
	w, at := [hashchain.Size]byte(preimage), index
	for k := len(targets) - 1; k >= 0; k-- {
		for ; at > targets[k]; at-- {
			if at%(1<<16) == 0 && ctx.Err() != nil {
				return RedeemResponse{}, fmt.Errorf("broker: redeem in steps: %w", ctx.Err())
			}
			w = sha256.Sum256(w[:])
		}
		pres[k] = w
	}
	targets, pres = append(targets, index), append(pres, preimage)
	for k, t := range targets {
		r, err := c.redeemOnce(ctx, channelID, t, pres[k])
		if err != nil {
			// What earlier steps paid is in the ledger; report it with
			// the error so the caller's accounting stays right.
			return total, fmt.Errorf("broker: redeem step to %d of %d: %w", t, index, err)
		}
		total.Paid += r.Paid
		total.Redeemed = max(total.Redeemed, r.Redeemed)
	}
	return total, nil
}

// Redemptions settles several channels the client is the payee of: each
// is redeemed up to its index and then closed, as asked, with one request
// per MaxRedemptions channels instead of one or two each. Results come in
// the order of rs; a channel the broker refused carries the error in its
// result. A redemption longer than the broker's max_step is split as
// Redeem splits it. The error is for the call as a whole (the network, the
// signature, a malformed request): the results before it are valid.
func (c *Client) Redemptions(ctx context.Context, rs []Redemption) ([]RedemptionResult, error) {
	out := make([]RedemptionResult, 0, len(rs))
	for len(rs) > 0 {
		batch := rs[:min(len(rs), MaxRedemptions)]
		rs = rs[len(batch):]
		var resp RedemptionsResponse
		if err := c.do(ctx, "redemptions", http.MethodPost, "/redemptions", "", RedemptionsRequest{Redemptions: batch}, &resp); err != nil {
			return out, err
		}
		if len(resp.Results) != len(batch) {
			return out, fmt.Errorf("broker: %d results for %d redemptions", len(resp.Results), len(batch))
		}
		for i, res := range resp.Results {
			if res.Channel != batch[i].Channel {
				return out, fmt.Errorf("broker: result %d is for channel %q, not %q", i, res.Channel, batch[i].Channel)
			}
			if res.Error != nil {
				res.Error.Status = httpStatusOf(res.Error.Code)
				if res.Error.Code == CodeStepTooLong {
					res = c.redeemAlone(ctx, batch[i], res.Error)
				}
			}
			out = append(out, res)
		}
	}
	return out, nil
}

// redeemAlone settles one channel whose redemption the broker refused as
// longer than its max_step: in steps it accepts (see Redeem), then closed
// if asked. What the steps paid is reported even when a later one fails.
func (c *Client) redeemAlone(ctx context.Context, r Redemption, tooLong *Error) RedemptionResult {
	res := RedemptionResult{Channel: r.Channel}
	asError := func(err error) *Error {
		var ae *Error
		if errors.As(err, &ae) {
			return ae
		}
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: err.Error()}
	}
	if tooLong.MaxStep < 1 {
		res.Error = tooLong
		return res
	}
	red, err := c.redeemInSteps(ctx, r.Channel, r.Index, r.Preimage, tooLong.MaxStep, tooLong)
	res.Paid, res.Redeemed = red.Paid, red.Redeemed
	if err != nil {
		res.Error = asError(err)
		return res
	}
	if r.Close {
		cl, err := c.Close(ctx, r.Channel)
		if err != nil {
			res.Error = asError(err)
			return res
		}
		res.Closed, res.Refund = true, cl.Refund
	}
	return res
}

// Close closes a channel and returns the unredeemed rest to the payer. It
// is idempotent: closing a closed channel moves nothing and reports the
// original refund.
func (c *Client) Close(ctx context.Context, channelID string) (CloseResponse, error) {
	if err := checkAccountID("channel id", channelID); err != nil {
		return CloseResponse{}, err
	}
	var resp CloseResponse
	err := c.do(ctx, "close", http.MethodPost, "/channels/"+channelID+"/close", "", CloseRequest{}, &resp)
	return resp, err
}

// Complain files a complaint against req.Account with the broker. It moves
// no money. Reusing idemKey for a complaint already filed succeeds without
// filing it twice; reusing it for a different complaint is a conflict.
func (c *Client) Complain(ctx context.Context, idemKey string, req ComplaintRequest) error {
	var resp ComplaintRecord
	return c.do(ctx, "complain", http.MethodPost, "/complaints", idemKey, req, &resp)
}

// Complaints lists the newest complaints against account (all complaints
// when account is empty), at most DefaultComplaintList of them. It needs
// the provider key.
func (c *Client) Complaints(ctx context.Context, account string) ([]ComplaintRecord, error) {
	return c.ComplaintsLimit(ctx, account, DefaultComplaintList)
}

// ComplaintsLimit is Complaints with an explicit limit in
// [1, MaxComplaintList].
func (c *Client) ComplaintsLimit(ctx context.Context, account string, limit int) ([]ComplaintRecord, error) {
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if account != "" {
		if err := checkAccountID("account", account); err != nil {
			return nil, err
		}
		q.Set("account", account)
	}
	var resp ComplaintsResponse
	err := c.do(ctx, "complaints", http.MethodGet, "/complaints?"+q.Encode(), "", nil, &resp)
	return resp.Complaints, err
}

// Audit returns the ledger's conservation figures (provider key only).
func (c *Client) Audit(ctx context.Context) (AuditResponse, error) {
	var resp AuditResponse
	err := c.do(ctx, "audit", http.MethodGet, "/audit", "", nil, &resp)
	return resp, err
}

// do performs one API call with retries and decodes the response into out.
func (c *Client) do(ctx context.Context, op, method, path, idemKey string, in, out any) (err error) {
	start := time.Now()
	defer func() {
		outcome := "ok"
		var apiErr *Error
		switch {
		case errors.As(err, &apiErr):
			outcome = apiErr.Code
		case err != nil:
			outcome = "network"
		}
		c.metrics.calls.WithLabelValues(op, outcome).Inc()
		c.metrics.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	}()
	if idemKey != "" {
		if err := checkIdempotencyKey(idemKey); err != nil {
			return fmt.Errorf("broker: %w", err)
		}
	}
	var body []byte
	if in != nil {
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("broker: encoding %s request: %w", op, err)
		}
	}
	u := *c.base
	path, u.RawQuery, _ = strings.Cut(path, "?")
	u.Path = c.base.Path + APIPrefix + path
	backoff := c.cfg.Backoff
	for attempt := 1; ; attempt++ {
		var retry bool
		retry, err = c.attempt(ctx, method, u.String(), idemKey, body, out)
		if !retry || attempt >= c.cfg.MaxAttempts || ctx.Err() != nil {
			if err != nil && ctx.Err() == nil && retry {
				err = fmt.Errorf("broker: %s failed after %d attempts: %w", op, attempt, err)
			}
			return err
		}
		c.metrics.retries.WithLabelValues(op).Inc()
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("broker: %s: %w (last error: %v)", op, ctx.Err(), err)
		case <-t.C:
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// attempt sends one signed request. retry reports whether the failure may
// be transient.
func (c *Client) attempt(ctx context.Context, method, rawURL, idemKey string, body []byte, out any) (retry bool, err error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, rawURL, rd)
	if err != nil {
		return false, fmt.Errorf("broker: building request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if idemKey != "" {
		req.Header.Set(HeaderIdempotency, idemKey)
	}
	if err := SignRequest(req, body, c.cfg.Key, c.cfg.Now()); err != nil {
		return false, err
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return ctx.Err() == nil, fmt.Errorf("broker: %s %s: %w", method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return ctx.Err() == nil, fmt.Errorf("broker: reading response: %w", err)
	}
	if len(data) > maxResponseBytes {
		return false, fmt.Errorf("broker: response exceeds %d bytes", maxResponseBytes)
	}
	if resp.StatusCode != http.StatusOK {
		e := DecodeErrorResponse(resp.StatusCode, data)
		return e.Temporary(), e
	}
	if err := json.Unmarshal(data, out); err != nil {
		return false, fmt.Errorf("broker: decoding response: %w", err)
	}
	return false, nil
}

// DecodeErrorResponse turns an error response into an *Error. A body that is
// not the API's error JSON (a proxy's error page, say) still yields an
// *Error with the status and a generic code.
func DecodeErrorResponse(status int, body []byte) *Error {
	e := &Error{Status: status}
	if err := json.Unmarshal(body, e); err != nil || e.Code == "" {
		e.Code, e.Message = CodeInternal, fmt.Sprintf("unexpected response: %.200q", body)
		if status < 500 {
			e.Code = CodeBadRequest
		}
	}
	e.Status = status
	return e
}
