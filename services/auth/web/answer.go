package web

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/mailferry/mailferry/services/auth/signin"
)

// failure is how an error is answered: status, a message for the user,
// the policy reasons, and when to retry.
type failure struct {
	status     int
	msg        string
	reasons    []string
	retryAfter time.Duration
}

// unavailableRetry is the Retry-After of a 503 when something is down,
// busyRetry when password hashing is saturated.
const (
	unavailableRetry = 30 * time.Second
	busyRetry        = 2 * time.Second
)

func classify(err error) failure {
	var (
		ie *signin.InputError
		pe *signin.PolicyError
		le *signin.LimitedError
	)
	switch {
	case errors.As(err, &ie):
		return failure{status: http.StatusBadRequest, msg: capitalize(ie.Msg) + "."}
	case errors.As(err, &pe):
		return failure{status: http.StatusUnprocessableEntity, msg: "The new password is not acceptable:", reasons: pe.Reasons}
	case errors.As(err, &le):
		return failure{status: http.StatusTooManyRequests, msg: capitalize(le.Error()) + ".", retryAfter: le.RetryAfter}
	case errors.Is(err, signin.ErrBadCredentials):
		return failure{status: http.StatusUnauthorized, msg: capitalize(signin.ErrBadCredentials.Error()) + "."}
	case errors.Is(err, signin.ErrBusy):
		return failure{status: http.StatusServiceUnavailable, msg: capitalize(signin.ErrBusy.Error()) + ".", retryAfter: busyRetry}
	}
	// Unavailable, or anything unexpected: say nothing specific.
	return failure{status: http.StatusServiceUnavailable, msg: capitalize(signin.ErrUnavailable.Error()) + ".", retryAfter: unavailableRetry}
}

func (f failure) setRetryAfter(w http.ResponseWriter) {
	if f.retryAfter <= 0 {
		return
	}
	secs := int64((f.retryAfter + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
}

func capitalize(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}
