package broker

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/floodgate-p2p/floodgate/internal/ledger"
)

// Error codes in the "code" field of an error response. Clients branch on
// these, never on messages, so they are part of the API and never renamed.
const (
	CodeBadRequest          = "bad_request"          // 400: malformed JSON or headers
	CodeInvalid             = "invalid"              // 400: well-formed but unacceptable values
	CodeStepTooLong         = "step_too_long"        // 400: a redemption advances more than max_step; split it
	CodeIdempotencyRequired = "idempotency_required" // 400: a money-moving call without Idempotency-Key
	CodeUnauthenticated     = "unauthenticated"      // 401: missing or malformed signature headers
	CodeBadSignature        = "bad_signature"        // 401: the signature does not verify
	CodeStaleTimestamp      = "stale_timestamp"      // 401: the timestamp is outside the skew window
	CodeReplayed            = "replayed"             // 401: the nonce was seen before
	CodeInsufficientFunds   = "insufficient_funds"   // 402: the payer's balance cannot cover it
	CodeForbidden           = "forbidden"            // 403: the caller may not do this
	CodeNotRegistered       = "not_registered"       // 403: the caller's key has no account
	CodeNotFound            = "not_found"            // 404: no such account or channel
	CodeMethodNotAllowed    = "method_not_allowed"   // 405
	CodeConflict            = "conflict"             // 409: idempotency key or id reused with other contents
	CodeClosed              = "closed"               // 409: the channel is closed
	CodeExpired             = "expired"              // 410: the channel has expired
	CodeTooLarge            = "too_large"            // 413: the body exceeds the size limit
	CodeUnsupportedMedia    = "unsupported_media"    // 415: the body is not application/json
	CodeRateLimited         = "rate_limited"         // 429: too many requests from this key
	CodeBadPreimage         = "bad_preimage"         // 422: the preimage does not hash to the chain
	CodeOverflow            = "overflow"             // 422: an amount does not fit in 64 bits
	CodeInternal            = "internal"             // 500: a bug or store failure; safe to retry
	CodeUnavailable         = "unavailable"          // 503: shutting down or overloaded; retry later
)

// Error is the body of every 4xx and 5xx response, and the error the Client
// returns for them. It unwraps to the matching ledger sentinel error (or
// ErrAuth for authentication failures), so callers can use errors.Is with
// ledger.ErrInsufficientFunds and friends on either side of the wire.
type Error struct {
	// Status is the HTTP status code; it is not part of the JSON body.
	Status int `json:"-"`
	// Code is one of the Code constants.
	Code string `json:"code"`
	// Message is for humans.
	Message string `json:"message"`
	// MaxStep is set with CodeStepTooLong: the most one redemption may
	// advance a channel.
	MaxStep int64 `json:"max_step,omitempty"`
}

// ErrAuth is what authentication failures (bad or missing signature, stale
// timestamp, replayed nonce, unregistered key) unwrap to.
var ErrAuth = errors.New("broker: authentication failed")

// Error implements error.
func (e *Error) Error() string {
	return fmt.Sprintf("broker: %s (%d %s): %s", e.Code, e.Status, http.StatusText(e.Status), e.Message)
}

// Unwrap returns the sentinel error the code stands for, or nil.
func (e *Error) Unwrap() error {
	switch e.Code {
	case CodeInsufficientFunds:
		return ledger.ErrInsufficientFunds
	case CodeNotFound:
		return ledger.ErrNotFound
	case CodeConflict:
		return ledger.ErrConflict
	case CodeBadPreimage:
		return ledger.ErrBadPreimage
	case CodeExpired:
		return ledger.ErrExpired
	case CodeClosed:
		return ledger.ErrClosed
	case CodeOverflow:
		return ledger.ErrOverflow
	case CodeInvalid, CodeStepTooLong:
		return ledger.ErrInvalid
	case CodeForbidden:
		return ledger.ErrForbidden
	case CodeUnauthenticated, CodeBadSignature, CodeStaleTimestamp, CodeReplayed, CodeNotRegistered:
		return ErrAuth
	}
	return nil
}

// Temporary reports whether retrying the same request later may succeed.
// A rate limit counts (the client backs off), and so does a stale
// timestamp: the request was refused unexecuted, and a retry
// is signed afresh — this covers a request signed just before the broker
// restarted (see the restart guard in authenticate).
func (e *Error) Temporary() bool {
	return e.Status >= 500 || e.Code == CodeStaleTimestamp || e.Code == CodeRateLimited
}

// httpStatusOf is the HTTP status an error code is sent with, for errors that
// arrive inside a 200 response (the results of a redemptions request).
func httpStatusOf(code string) int {
	switch code {
	case CodeBadRequest, CodeInvalid, CodeStepTooLong, CodeIdempotencyRequired:
		return http.StatusBadRequest
	case CodeUnauthenticated, CodeBadSignature, CodeStaleTimestamp, CodeReplayed:
		return http.StatusUnauthorized
	case CodeInsufficientFunds:
		return http.StatusPaymentRequired
	case CodeForbidden, CodeNotRegistered:
		return http.StatusForbidden
	case CodeNotFound:
		return http.StatusNotFound
	case CodeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case CodeConflict, CodeClosed:
		return http.StatusConflict
	case CodeExpired:
		return http.StatusGone
	case CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeUnsupportedMedia:
		return http.StatusUnsupportedMediaType
	case CodeRateLimited:
		return http.StatusTooManyRequests
	case CodeBadPreimage, CodeOverflow:
		return http.StatusUnprocessableEntity
	case CodeUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func apiError(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// fromLedger maps an error from the ledger to an API error. Errors that wrap
// no sentinel are store failures: their detail goes to the log, not to the
// client.
func fromLedger(err error) *Error {
	var status int
	var code string
	var se *ledger.StepError
	switch {
	case errors.As(err, &se):
		return &Error{Status: http.StatusBadRequest, Code: CodeStepTooLong, Message: err.Error(), MaxStep: se.Max}
	case errors.Is(err, ledger.ErrInsufficientFunds):
		status, code = http.StatusPaymentRequired, CodeInsufficientFunds
	case errors.Is(err, ledger.ErrNotFound):
		status, code = http.StatusNotFound, CodeNotFound
	case errors.Is(err, ledger.ErrConflict):
		status, code = http.StatusConflict, CodeConflict
	case errors.Is(err, ledger.ErrBadPreimage):
		status, code = http.StatusUnprocessableEntity, CodeBadPreimage
	case errors.Is(err, ledger.ErrExpired):
		status, code = http.StatusGone, CodeExpired
	case errors.Is(err, ledger.ErrClosed):
		status, code = http.StatusConflict, CodeClosed
	case errors.Is(err, ledger.ErrOverflow):
		status, code = http.StatusUnprocessableEntity, CodeOverflow
	case errors.Is(err, ledger.ErrInvalid):
		status, code = http.StatusBadRequest, CodeInvalid
	case errors.Is(err, ledger.ErrForbidden):
		status, code = http.StatusForbidden, CodeForbidden
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return apiError(http.StatusServiceUnavailable, CodeUnavailable, "request cancelled")
	default:
		return apiError(http.StatusInternalServerError, CodeInternal, "internal error")
	}
	return &Error{Status: status, Code: code, Message: err.Error()}
}
