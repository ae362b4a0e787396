package slack

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"
)

// MaxRequestAge is how old a signed request may be: Slack's advice, and the
// window in which a signature is remembered to refuse its replay.
const MaxRequestAge = 5 * time.Minute

// Errors of Verify.
var (
	ErrBadSignature = errors.New("invalid Slack signature")
	ErrStale        = errors.New("stale Slack request: timestamp too old or in the future")
	ErrReplayed     = errors.New("replayed Slack request")
)

// Verifier authenticates the requests Slack sends when a button is pressed:
// X-Slack-Signature must be "v0=" and the hex HMAC-SHA256 of
// "v0:<X-Slack-Request-Timestamp>:<body>" under one of the signing secrets,
// the timestamp within MaxRequestAge of now, and the signature unseen in
// that window. It is safe for concurrent use.
type Verifier struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

// NewVerifier returns a Verifier.
func NewVerifier() *Verifier { return &Verifier{seen: map[string]time.Time{}} }

// Sign returns the signature of body at ts under secret (for tests and
// clients).
func Sign(secret string, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "v0:%d:", ts)
	mac.Write(body)
	return "v0=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify checks a request's headers and body against secrets at now.
func (v *Verifier) Verify(h http.Header, body []byte, secrets []string, now time.Time) error {
	ts, err := strconv.ParseInt(h.Get("X-Slack-Request-Timestamp"), 10, 64)
	if err != nil {
		return ErrBadSignature
	}
	sig := h.Get("X-Slack-Signature")
	ok := false
	for _, s := range secrets {
		if s != "" && hmac.Equal([]byte(sig), []byte(Sign(s, ts, body))) {
			ok = true
			break
		}
	}
	if !ok {
		return ErrBadSignature
	}
	if d := now.Sub(time.Unix(ts, 0)); d > MaxRequestAge || d < -MaxRequestAge {
		return ErrStale
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for s, at := range v.seen {
		if now.Sub(at) > 2*MaxRequestAge {
			delete(v.seen, s)
		}
	}
	if _, dup := v.seen[sig]; dup {
		return ErrReplayed
	}
	v.seen[sig] = now
	return nil
}

// Action is a button pressed in Slack.
type Action struct {
	// Name is ActionAcknowledge, ActionResolve, ActionFalsePositive,
	// ActionApprove or ActionReject.
	Name string
	ButtonValue
	// User is who pressed it: their Slack user name, or id.
	User string
}

// ParseInteraction reads the form body Slack posts (payload=<JSON>) and
// returns the alertd buttons pressed.
func ParseInteraction(body []byte) ([]Action, error) {
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fmt.Errorf("couldn't parse the form: %w", err)
	}
	var cb slack.InteractionCallback
	if err := json.Unmarshal([]byte(form.Get("payload")), &cb); err != nil {
		return nil, fmt.Errorf("couldn't parse the payload: %w", err)
	}
	if cb.Type != slack.InteractionTypeBlockActions {
		return nil, fmt.Errorf("unsupported interaction type %q", cb.Type)
	}
	user := cb.User.Name
	if user == "" {
		user = cb.User.ID
	}
	user = strings.TrimSpace(user)
	var out []Action
	for _, ba := range cb.ActionCallback.BlockActions {
		switch ba.ActionID {
		case ActionAcknowledge, ActionResolve, ActionFalsePositive, ActionApprove, ActionReject:
		default:
			continue
		}
		a := Action{Name: ba.ActionID, User: user}
		if err := json.Unmarshal([]byte(ba.Value), &a.ButtonValue); err != nil {
			return nil, fmt.Errorf("couldn't parse the value of %q: %w", ba.ActionID, err)
		}
		out = append(out, a)
	}
	return out, nil
}
