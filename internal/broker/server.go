// Package broker is the provider's bank as an HTTP JSON API (an
// http.Handler over the ledger) and the Go client that peers and the CLI use
// to call it. docs/broker.md is the API reference.
//
// The server authenticates every request by the caller's Ed25519 signature
// (auth.go), refuses replays, maps ledger errors to stable codes
// (errors.go), and signs a voucher for every channel it opens. All money
// rules live in the ledger; the server decides only who may ask for what.
package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/floodgate-p2p/floodgate/internal/identity"
	"github.com/floodgate-p2p/floodgate/internal/ledger"
)

// Ledger is what the server needs from the ledger; *ledger.Ledger
// implements it.
type Ledger interface {
	CreateAccount(ctx context.Context, id ledger.AccountID, kind ledger.Kind, pubKey []byte) error
	AccountByKey(ctx context.Context, pubKey []byte) (ledger.AccountID, error)
	Balance(ctx context.Context, id ledger.AccountID) (int64, error)
	Mint(ctx context.Context, idemKey string, to ledger.AccountID, amount int64) error
	OpenChannel(ctx context.Context, idemKey string, spec ledger.Channel, now time.Time) (ledger.Channel, error)
	Redeem(ctx context.Context, channelID string, index int64, preimage [32]byte, now time.Time) (int64, error)
	Close(ctx context.Context, channelID string, by ledger.AccountID, now time.Time) (int64, error)
	Settle(ctx context.Context, by ledger.AccountID, items []ledger.Settlement, now time.Time) ([]ledger.Settled, error)
	ExpireChannels(ctx context.Context, now time.Time) (int, error)
	Channel(ctx context.Context, id string) (ledger.Channel, error)
	Audit(ctx context.Context) (minted, sumOfBalances int64, err error)
	FileComplaint(ctx context.Context, idemKey string, c ledger.Complaint, now time.Time) (ledger.Complaint, error)
	Complaints(ctx context.Context, accused ledger.AccountID, limit int) ([]ledger.Complaint, error)
}

// Config configures a Server. Zero durations and sizes select the defaults
// noted.
type Config struct {
	// Ledger holds the money. Required.
	Ledger Ledger
	// ProviderKey signs certificates and vouchers, and is the only key
	// allowed to mint and audit. Required.
	ProviderKey *identity.PrivateKey
	// ProviderAccount is the provider's account in the ledger. Defaults to
	// the account id of ProviderKey. Init creates it.
	ProviderAccount string
	// Skew is how far a request's timestamp may be from the server's clock.
	// Defaults to 60 s. Nonces are remembered for this long.
	Skew time.Duration
	// CertValidity is the lifetime of issued certificates. Defaults to 30
	// days; clients re-register to renew.
	CertValidity time.Duration
	// MinChannelLifetime is the shortest expiry (from now) an open may ask
	// for, so payees have time to redeem. Defaults to 1 minute.
	MinChannelLifetime time.Duration
	// MaxChannelLifetime is the longest. Defaults to 30 days: locked money
	// must come back to the payer in bounded time.
	MaxChannelLifetime time.Duration
	// MaxBodyBytes bounds request bodies. Defaults to DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxNonces caps the replay cache. Defaults to 1<<20 (about 100 MiB at
	// worst).
	MaxNonces int
	// RatePerKey and BurstPerKey bound each caller key's request rate
	// (token bucket); the provider's key is exempt. Default 1000/s with a
	// burst of 2000: far above what an honest peer needs, since it talks
	// to the broker per channel, not per piece.
	RatePerKey  float64
	BurstPerKey int
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
	// Logger receives server-side failures. Defaults to discarding.
	Logger *slog.Logger
	// Registerer receives the server's metrics; nil leaves them
	// unregistered.
	Registerer prometheus.Registerer
}

// Server is the broker's HTTP API. It serves paths under APIPrefix; mount it
// at "/broker/" without stripping the prefix (signatures cover the full
// request URI).
type Server struct {
	cfg         Config
	mux         *http.ServeMux
	nonces      *nonceCache
	metrics     *serverMetrics
	startMillis int64
	accounts    sync.Map // identity.PublicKey -> string; registrations never change
	parties     partyCache
	limiter     *keyLimiter
}

// partyCache remembers the payer and payee of recently used channels. They
// never change, so a redemption can be authorised without a database read;
// the ledger still checks everything that can change (state, expiry,
// index). It is bounded by forgetting everything when full, which costs
// only a few re-reads.
type partyCache struct {
	mu sync.Mutex
	m  map[string][2]string
}

const maxPartyCache = 1 << 16

func (c *partyCache) get(id string) ([2]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.m[id]
	return p, ok
}

func (c *partyCache) put(id, payer, payee string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxPartyCache {
		c.m = make(map[string][2]string)
	}
	c.m[id] = [2]string{payer, payee}
}

// NewServer validates cfg and builds the server. Call Init before serving.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Ledger == nil || cfg.ProviderKey == nil {
		return nil, errors.New("broker: Config.Ledger and Config.ProviderKey are required")
	}
	if cfg.ProviderAccount == "" {
		cfg.ProviderAccount = cfg.ProviderKey.AccountID()
	}
	if err := checkAccountID("provider account", cfg.ProviderAccount); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.Skew, time.Minute)
	def(&cfg.CertValidity, 30*24*time.Hour)
	def(&cfg.MinChannelLifetime, time.Minute)
	def(&cfg.MaxChannelLifetime, 30*24*time.Hour)
	if cfg.MaxChannelLifetime < cfg.MinChannelLifetime {
		return nil, errors.New("broker: MaxChannelLifetime below MinChannelLifetime")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxNonces <= 0 {
		cfg.MaxNonces = 1 << 20
	}
	if cfg.RatePerKey <= 0 {
		cfg.RatePerKey = 1000
	}
	if cfg.BurstPerKey <= 0 {
		cfg.BurstPerKey = 2000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg: cfg, nonces: newNonceCache(cfg.MaxNonces), startMillis: cfg.Now().UnixMilli(),
		limiter: newKeyLimiter(rate.Limit(cfg.RatePerKey), cfg.BurstPerKey, 1<<18),
	}
	m, err := newServerMetrics(cfg.Registerer, func() float64 { return float64(s.nonces.len()) })
	if err != nil {
		return nil, fmt.Errorf("broker: metrics: %w", err)
	}
	s.metrics = m
	s.mux = http.NewServeMux()
	s.route("POST /register", "register", routeOpts{}, s.register)
	s.route("GET /accounts/{id}", "balance", routeOpts{account: true}, s.balance)
	s.route("POST /mint", "mint", routeOpts{provider: true, idempotent: true}, s.mint)
	s.route("POST /channels", "open", routeOpts{account: true, idempotent: true}, s.open)
	s.route("GET /channels/{id}", "channel", routeOpts{account: true}, s.channel)
	s.route("POST /channels/{id}/redeem", "redeem", routeOpts{account: true}, s.redeem)
	s.route("POST /channels/{id}/close", "close", routeOpts{account: true}, s.close)
	s.route("POST /redemptions", "redemptions", routeOpts{account: true}, s.redemptions)
	s.route("GET /audit", "audit", routeOpts{provider: true}, s.audit)
	s.route("POST /complaints", "complain", routeOpts{account: true, idempotent: true}, s.complain)
	s.route("GET /complaints", "complaints", routeOpts{provider: true}, s.complaints)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.finish(w, "unknown", time.Now(), nil, apiError(http.StatusNotFound, CodeNotFound, "no endpoint %s %s", r.Method, r.URL.Path))
	})
	return s, nil
}

// Init creates the provider's account in the ledger (idempotently). The
// provider command calls it once before serving.
func (s *Server) Init(ctx context.Context) error {
	pub := s.cfg.ProviderKey.Public()
	if err := s.cfg.Ledger.CreateAccount(ctx, ledger.AccountID(s.cfg.ProviderAccount), ledger.KindProvider, pub[:]); err != nil {
		return fmt.Errorf("broker: create provider account: %w", err)
	}
	return nil
}

// ProviderAccount returns the provider's account id.
func (s *Server) ProviderAccount() string { return s.cfg.ProviderAccount }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// RunExpirer closes expired channels every interval until ctx ends, so that
// locked money returns to payers even if nobody asks. It returns ctx's error.
func (s *Server) RunExpirer(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			n, err := s.cfg.Ledger.ExpireChannels(ctx, s.cfg.Now())
			if err != nil && ctx.Err() == nil {
				s.cfg.Logger.Error("expiring channels", "err", err)
			} else if n > 0 {
				s.cfg.Logger.Info("expired channels", "count", n)
			}
		}
	}
}

// call is one authenticated request as handlers see it.
type call struct {
	r          *http.Request
	body       []byte
	key        identity.PublicKey
	account    string // "" when the key is not registered (register only)
	isProvider bool
	idemKey    string
	now        time.Time
}

type routeOpts struct {
	account    bool // the caller must have an account (or be the provider)
	provider   bool // the caller must be the provider
	idempotent bool // Idempotency-Key is required
}

type handler func(ctx context.Context, c *call) (any, *Error)

func (s *Server) route(pattern, name string, opts routeOpts, h handler) {
	method, path, _ := strings.Cut(pattern, " ")
	s.mux.HandleFunc(method+" "+APIPrefix+path, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		c, e := s.authenticate(w, r, opts)
		var resp any
		if e == nil {
			resp, e = h(r.Context(), c)
		}
		s.finish(w, name, start, resp, e)
	})
}

// authenticate reads the body and checks the signature, timestamp, nonce,
// caller's role and idempotency key, in that order: nothing an anonymous
// client sends reaches the nonce cache or the ledger.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, opts routeOpts) (*call, *Error) {
	if r.Method == http.MethodPost {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/json" {
			return nil, apiError(http.StatusUnsupportedMediaType, CodeUnsupportedMedia, "Content-Type must be application/json")
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, apiError(http.StatusRequestEntityTooLarge, CodeTooLarge, "body exceeds %d bytes", mbe.Limit)
		}
		return nil, apiError(http.StatusBadRequest, CodeBadRequest, "reading body: %v", err)
	}
	h, e := parseAuthHeaders(r.Header)
	if e != nil {
		return nil, e
	}
	now := s.cfg.Now()
	nowMs, skewMs := now.UnixMilli(), s.cfg.Skew.Milliseconds()
	if h.ts < nowMs-skewMs || h.ts > nowMs+skewMs {
		return nil, apiError(http.StatusUnauthorized, CodeStaleTimestamp, "timestamp %d ms is more than %v from the broker's clock (%d ms)", h.ts, s.cfg.Skew, nowMs)
	}
	// The nonce cache is lost on restart; refusing requests signed before
	// this process started means a request captured before a crash cannot
	// be replayed after it.
	if h.ts < s.startMillis {
		return nil, apiError(http.StatusUnauthorized, CodeStaleTimestamp, "request signed before the broker started; sign it again")
	}
	if !h.key.Verify(requestMessage(r.Method, r.RequestURI, h.ts, h.nonce, h.idemKey, body), h.sig) {
		return nil, apiError(http.StatusUnauthorized, CodeBadSignature, "signature does not verify")
	}
	if h.key != s.cfg.ProviderKey.Public() && !s.limiter.allow(h.key, now) {
		return nil, apiError(http.StatusTooManyRequests, CodeRateLimited, "too many requests from this key; slow down")
	}
	fresh, full := s.nonces.add(nonceKey{h.key, h.nonce}, h.ts+skewMs, nowMs)
	if full {
		return nil, apiError(http.StatusServiceUnavailable, CodeUnavailable, "too many requests in flight; retry later")
	}
	if !fresh {
		return nil, apiError(http.StatusUnauthorized, CodeReplayed, "nonce already used")
	}
	c := &call{r: r, body: body, key: h.key, idemKey: h.idemKey, now: now}
	if h.key == s.cfg.ProviderKey.Public() {
		c.isProvider, c.account = true, s.cfg.ProviderAccount
	} else if opts.account || opts.provider {
		acct, e := s.accountOf(r.Context(), h.key)
		if e != nil {
			return nil, e
		}
		c.account = acct
	}
	if opts.provider && !c.isProvider {
		return nil, apiError(http.StatusForbidden, CodeForbidden, "only the provider key may do this")
	}
	if opts.idempotent && c.idemKey == "" {
		return nil, apiError(http.StatusBadRequest, CodeIdempotencyRequired, "this call moves money: send an %s header and reuse it on retries", HeaderIdempotency)
	}
	return c, nil
}

// accountOf maps a key to its registered account, caching hits (a key's
// account never changes once registered).
func (s *Server) accountOf(ctx context.Context, key identity.PublicKey) (string, *Error) {
	if v, ok := s.accounts.Load(key); ok {
		return v.(string), nil
	}
	id, err := s.cfg.Ledger.AccountByKey(ctx, key[:])
	if errors.Is(err, ledger.ErrNotFound) {
		return "", apiError(http.StatusForbidden, CodeNotRegistered, "key %s has no account; register first", key)
	}
	if err != nil {
		return "", s.ledgerError("account by key", err)
	}
	s.accounts.Store(key, string(id))
	return string(id), nil
}

// ledgerError maps a ledger error and logs those that are not the client's
// fault.
func (s *Server) ledgerError(op string, err error) *Error {
	e := fromLedger(err)
	if e.Status >= 500 {
		s.cfg.Logger.Error("broker: ledger call failed", "op", op, "err", err)
	}
	return e
}

func (s *Server) finish(w http.ResponseWriter, route string, start time.Time, resp any, e *Error) {
	status, code := http.StatusOK, "ok"
	if e != nil {
		status, code, resp = e.Status, e.Code, e
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(resp); err != nil {
		s.cfg.Logger.Debug("broker: writing response", "err", err)
	}
	s.metrics.requests.WithLabelValues(route, code).Inc()
	s.metrics.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
}

func badBody(err error) *Error {
	if errors.Is(err, ledger.ErrInvalid) {
		return apiError(http.StatusBadRequest, CodeInvalid, "%v", err)
	}
	return apiError(http.StatusBadRequest, CodeBadRequest, "%v", err)
}
