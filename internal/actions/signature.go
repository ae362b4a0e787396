package actions

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The headers of a signed webhook.
const (
	// HeaderTimestamp is the Unix time, in seconds, the request was signed.
	HeaderTimestamp = "X-Modelmon-Timestamp"
	// HeaderSignature is "sha256=" and the hex HMAC-SHA256, keyed with the
	// shared secret, of "<timestamp>.<body>".
	HeaderSignature = "X-Modelmon-Signature"
)

// MaxSignatureAge is how old a signature receivers accept: a request
// signed longer ago (or further in the future) is refused, so a captured
// request cannot be replayed later.
const MaxSignatureAge = 5 * time.Minute

// Errors of Verify.
var (
	ErrNoSignature  = errors.New("missing " + HeaderTimestamp + " or " + HeaderSignature + " header")
	ErrBadSignature = errors.New("signature does not match")
	ErrStale        = errors.New("signature timestamp outside the accepted window")
	ErrReplayed     = errors.New("signature already seen")
)

// Sign returns the timestamp and signature headers of body at now.
func Sign(secret string, body []byte, now time.Time) (timestamp, signature string) {
	timestamp = strconv.FormatInt(now.Unix(), 10)
	return timestamp, "sha256=" + mac(secret, timestamp, body)
}

func mac(secret, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(timestamp))
	m.Write([]byte("."))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// Verify checks the signature of a webhook request with the shared secret
// at now: the signature must match the body and its timestamp be within
// MaxSignatureAge of now. Receivers should also keep the Idempotency-Key
// of what they have done, as alertd delivers at least once (a retry is
// signed anew), and may use a Verifier to refuse exact replays.
func Verify(secret string, header http.Header, body []byte, now time.Time) error {
	ts, sig := header.Get(HeaderTimestamp), header.Get(HeaderSignature)
	if ts == "" || sig == "" {
		return ErrNoSignature
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("invalid %s %q: %w", HeaderTimestamp, ts, ErrBadSignature)
	}
	hexSig, ok := strings.CutPrefix(sig, "sha256=")
	if !ok {
		return fmt.Errorf("%s must start with sha256=: %w", HeaderSignature, ErrBadSignature)
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return fmt.Errorf("%s is not hex: %w", HeaderSignature, ErrBadSignature)
	}
	want, _ := hex.DecodeString(mac(secret, ts, body))
	if !hmac.Equal(got, want) {
		return ErrBadSignature
	}
	if d := now.Sub(time.Unix(sec, 0)); d > MaxSignatureAge || d < -MaxSignatureAge {
		return fmt.Errorf("signed at %s, %s from now: %w", time.Unix(sec, 0).UTC().Format(time.RFC3339), d.Round(time.Second), ErrStale)
	}
	return nil
}

// Verifier verifies signed webhook requests and refuses a signature it
// has already accepted (an exact replay within the window). It is safe
// for concurrent use.
type Verifier struct {
	Secret string

	mu   sync.Mutex
	seen map[string]time.Time
}

// Verify is Verify with replay detection.
func (v *Verifier) Verify(header http.Header, body []byte, now time.Time) error {
	if err := Verify(v.Secret, header, body, now); err != nil {
		return err
	}
	sig := header.Get(HeaderSignature)
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.seen == nil {
		v.seen = map[string]time.Time{}
	}
	for s, t := range v.seen {
		if now.Sub(t) > 2*MaxSignatureAge {
			delete(v.seen, s)
		}
	}
	if _, ok := v.seen[sig]; ok {
		return ErrReplayed
	}
	v.seen[sig] = now
	return nil
}
