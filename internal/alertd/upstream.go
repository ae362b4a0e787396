package alertd

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amalert "github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/api/v2/models"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"

	"github.com/modelmon/modelmon/internal/alertconfig"
)

// An Alertmanager's webhook says nothing of the alerts it silences or
// inhibits: they drop out of their group's notifications, and a later
// notification of the group leaving one out made alertd resolve it
// (relay.go), so an alert silenced upstream showed as resolved here and
// paged again as new when the silence ended. And the last alert of a
// group whose webhook has send_resolved: false to resolve is left out of
// nothing, since the Alertmanager then sends nothing at all: it lasted
// intake.alertmanager_resolve_timeout (8h5m).
//
// The Alertmanager's API knows both. Its webhook's externalURL is where
// its API is (its route prefix is that URL's path), and GET
// /api/v2/alerts lists every alert it holds that has not resolved, with
// the receivers its routes send it to and its silences and inhibitions.
// alertd asks it (intake.alertmanager_api), off the webhook's path and
// with a timeout:
//
//   - when a complete notification of a group leaves alerts out: those it
//     lists for the receiver, silenced or inhibited, stay firing here and
//     the upstream stage suppresses them, with the silence's id, author
//     and comment; those it lists active stay firing; the others resolve,
//     as before. Until it answers, the upstream stage holds them, so that
//     a flush of their group in alertd's notifier meanwhile neither pages
//     them firing (the Alertmanager may silence them) nor tells them
//     resolved (it may not), and their incidents' escalation waits; the
//     hold is kept in pushed_alerts.json, and a restart meanwhile asks
//     again;
//   - every check_interval, about every firing alert it relayed: one it
//     lists silenced or inhibited is suppressed, one it lists active is
//     released (its Alertmanager notifies it again once the silence ends
//     anyway, which releases it too), and either is firing there, so its
//     end time moves on as a delivery would move it. One it no longer
//     lists for the receiver, in two checks in a row, has resolved there:
//     alertd resolves it. That is the last alert of a send_resolved: false
//     group, resolved within two intervals instead of 8h5m.
//
// An Alertmanager holds no alerts when it starts, until its Prometheus
// servers send them again, within their resend delay (a minute by
// default) and at most intake.resolve_timeout (or alertd's own pushed
// alerts would have timed out). Its GET /api/v2/status says when it
// started: until it has run that long, an alert it does not list proves
// nothing. Two checks in a row guard against an answer from a replica
// behind the same URL that has just started, and against an alert
// between its Prometheus's resends.
//
// When an Alertmanager can't be asked (no externalURL, unreachable, an
// error status, an answer that does not parse), alertd does as it did
// without the checks: a left-out alert resolves (once the check failed),
// the others wait for their timeout. Each check is counted, and each failed one; the error is
// logged when it changes.

// upstreamMark is what an Alertmanager's API said of an alert it relayed
// and now silences or inhibits: its webhook does not send the alert while
// it does.
type upstreamMark struct {
	// URL is the Alertmanager's external URL.
	URL         string   `json:"url"`
	SilencedBy  []string `json:"silencedBy,omitempty"`
	InhibitedBy []string `json:"inhibitedBy,omitempty"`
	// Reason is the suppression's reason in the alert's history.
	Reason string `json:"reason"`
}

// upstreamCheck is a check, under way, of the API of the Alertmanager at
// URL about the alerts a complete notification of its group GroupKey to
// Receiver left out at At. Until it answers, they are held: they may be
// silenced or inhibited there (then notified firing they would page for
// nothing), or resolved (then kept firing they would escalate), so they
// are neither. It is kept with them in pushed_alerts.json, so that a
// restart meanwhile asks again.
type upstreamCheck struct {
	URL      string    `json:"url"`
	Receiver string    `json:"receiver"`
	GroupKey string    `json:"groupKey"`
	At       time.Time `json:"at"`
}

// same reports whether c and o are the same check; o may be nil.
func (c *upstreamCheck) same(o *upstreamCheck) bool {
	return o != nil && c.URL == o.URL && c.Receiver == o.Receiver && c.GroupKey == o.GroupKey && c.At.Equal(o.At)
}

// reason is the history's reason of an alert the check is about.
func (c *upstreamCheck) reason() string {
	return leftOutReason(c.URL, c.Receiver, c.GroupKey)
}

// upstreamStage suppresses the alerts relayed by an Alertmanager that now
// silences or inhibits them there, and holds those its API is asked about.
type upstreamStage struct{}

// Name implements Stage.
func (upstreamStage) Name() string { return "upstream" }

// operatorDecision implements operatorStage: the Alertmanager does not
// send the alert while it holds it, whatever alertd's escalation says.
func (upstreamStage) operatorDecision() {}

// Process implements Stage. A hold while the API is asked is not a
// suppression: it is not counted as one, and the history says "held".
func (upstreamStage) Process(_ context.Context, _ time.Time, a *Alert) Decision {
	if a.Source != SourceAlertmanager {
		return Decision{}
	}
	switch {
	case a.upstream != nil:
		a.Suppressed = true
		return Decision{Action: "suppressed", Reason: a.upstream.Reason}
	case a.awaiting != nil:
		a.Suppressed = true
		return Decision{Action: "held", Reason: a.awaiting.reason() +
			"; held from notifications, neither firing nor resolved, until its API says whether it silences or inhibits it"}
	}
	return Decision{}
}

// upstreamMaxBody bounds an answer of an Alertmanager's API.
const upstreamMaxBody = 64 << 20

// upstreamMisses is how many checks in a row must not find a relayed
// alert before alertd resolves it.
const upstreamMisses = 2

// upstream asks the Alertmanagers that relay alerts to the webhook intake
// about them.
type upstream struct {
	store  *store
	logger *slog.Logger
	now    func() time.Time
	cfg    func() *alertconfig.Config
	client atomic.Pointer[http.Client]

	checks, failed prometheus.Counter

	// mu serialises what alertd learns of relayed alerts: a webhook
	// delivery, and the application of a check's answers.
	mu sync.Mutex
	// errMu guards lastErr, the latest error of each Alertmanager, logged
	// when it changes.
	errMu   sync.Mutex
	lastErr map[string]string
	// ctx ends the checks when alertd stops; wg waits for those of
	// left-out alerts.
	ctx context.Context
	wg  sync.WaitGroup
}

func newUpstream(ctx context.Context, reg prometheus.Registerer, s *store, logger *slog.Logger, now func() time.Time, cfg func() *alertconfig.Config) *upstream {
	f := promauto.With(reg)
	return &upstream{
		store: s, logger: logger, now: now, cfg: cfg, ctx: ctx, lastErr: map[string]string{},
		checks: f.NewCounter(prometheus.CounterOpts{
			Name: "alertd_intake_alertmanager_checks_total",
			Help: "The total number of times alertd asked the API of an Alertmanager that relays alerts to its webhook which of them still fire there.",
		}),
		failed: f.NewCounter(prometheus.CounterOpts{
			Name: "alertd_intake_alertmanager_checks_failed_total",
			Help: "The total number of checks of the API of an Alertmanager that relays alerts to alertd's webhook that got no usable answer; alertd then keeps to what the webhooks say.",
		}),
	}
}

// newUpstreamClient builds the HTTP client of the configuration's
// intake.alertmanager_api.
func newUpstreamClient(c alertconfig.AlertmanagerAPI) (*http.Client, error) {
	client, err := commoncfg.NewClientFromConfig(c.HTTPClientConfig, "alertd_alertmanager_api")
	if err != nil {
		return nil, fmt.Errorf("couldn't configure intake.alertmanager_api: %w", err)
	}
	return client, nil
}

// enabled reports whether alertd asks the Alertmanagers.
func (u *upstream) enabled() bool {
	return u.cfg().Intake.AlertmanagerAPI.CheckInterval > 0
}

// run checks every check_interval until ctx is done.
func (u *upstream) run(ctx context.Context) {
	for {
		d := time.Duration(u.cfg().Intake.AlertmanagerAPI.CheckInterval)
		if d <= 0 {
			d = time.Minute // turned off: look again after a reload
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if u.enabled() {
			u.checkAll(ctx)
		}
	}
}

// wait waits for the checks of left-out alerts under way.
func (u *upstream) wait() { u.wg.Wait() }

// amAnswer is what an Alertmanager's API said of its alerts.
type amAnswer struct {
	// asked is when the check began; started when the Alertmanager
	// started (zero when not asked).
	asked, started time.Time
	alerts         map[model.Fingerprint]*models.GettableAlert
	// silences are the silences of its alerts, by id, that it could
	// give.
	silences map[string]*models.GettableSilence
}

// apiBase returns the base URL of the API of the Alertmanager at
// externalURL.
func apiBase(externalURL string) (string, error) {
	u, err := url.Parse(externalURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("the webhook's externalURL %q is not an http(s) URL", externalURL)
	}
	u.RawQuery, u.Fragment = "", ""
	return strings.TrimSuffix(u.String(), "/"), nil
}

// ask asks the Alertmanager at externalURL for its alerts, when it
// started if withStatus, and the silences of the silenced ones. It
// counts the check, and logs its error when it changes.
func (u *upstream) ask(ctx context.Context, externalURL string, withStatus bool) (*amAnswer, error) {
	u.checks.Inc()
	ans, err := u.get(ctx, externalURL, withStatus)
	if err != nil && ctx.Err() != nil {
		// alertd stops: no fault of the Alertmanager's.
		return nil, err
	}
	u.errMu.Lock()
	defer u.errMu.Unlock()
	msg := ""
	if err != nil {
		u.failed.Inc()
		msg = err.Error()
	}
	if msg != u.lastErr[externalURL] {
		if err != nil {
			u.logger.Warn("Failed to ask an Alertmanager about the alerts it relays; keeping to what its webhook says",
				"alertmanager", externalURL, "err", err)
		} else {
			u.logger.Info("Asking an Alertmanager about the alerts it relays works again", "alertmanager", externalURL)
		}
		u.lastErr[externalURL] = msg
	}
	if msg == "" {
		delete(u.lastErr, externalURL)
	}
	return ans, err
}

func (u *upstream) get(ctx context.Context, externalURL string, withStatus bool) (*amAnswer, error) {
	base, err := apiBase(externalURL)
	if err != nil {
		return nil, err
	}
	if api := u.cfg().Intake.AlertmanagerAPI; !api.Allows(externalURL) {
		return nil, fmt.Errorf("the webhook's externalURL %q is not in intake.alertmanager_api.urls", externalURL)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(u.cfg().Intake.AlertmanagerAPI.Timeout))
	defer cancel()
	ans := &amAnswer{asked: u.now(), alerts: map[model.Fingerprint]*models.GettableAlert{}, silences: map[string]*models.GettableSilence{}}
	if withStatus {
		var st models.AlertmanagerStatus
		if err := u.getJSON(ctx, base+"/api/v2/status", &st); err != nil {
			return nil, err
		}
		if st.Uptime == nil {
			return nil, errors.New("GET /api/v2/status: no uptime")
		}
		ans.started = time.Time(*st.Uptime)
	}
	var gas models.GettableAlerts
	if err := u.getJSON(ctx, base+"/api/v2/alerts", &gas); err != nil {
		return nil, err
	}
	for _, ga := range gas {
		if ga == nil || ga.Status == nil {
			continue
		}
		ls := model.LabelSet{}
		for k, v := range ga.Labels {
			if v != "" {
				ls[model.LabelName(k)] = model.LabelValue(v)
			}
		}
		ans.alerts[ls.Fingerprint()] = ga
	}
	// The silences' authors and comments go into the reasons; an answer
	// without them still says the alert is silenced.
	for _, ga := range ans.alerts {
		for _, id := range ga.Status.SilencedBy {
			if _, ok := ans.silences[id]; ok || ctx.Err() != nil {
				continue
			}
			var sil models.GettableSilence
			if err := u.getJSON(ctx, base+"/api/v2/silence/"+url.PathEscape(id), &sil); err == nil {
				ans.silences[id] = &sil
			} else {
				ans.silences[id] = nil
			}
		}
	}
	return ans, nil
}

// getJSON decodes the answer of a GET of u into v.
func (u *upstream) getJSON(ctx context.Context, target string, v any) error {
	path := target
	if p, err := url.Parse(target); err == nil {
		path = p.Path // the error names no credentials of the URL
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := u.client.Load().Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("GET %s: unexpected status %s", path, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, upstreamMaxBody)).Decode(v); err != nil {
		return fmt.Errorf("GET %s: couldn't decode the answer: %w", path, err)
	}
	return nil
}

// upstreamState is what one Alertmanager's answer says of one alert.
type upstreamState int

const (
	// upstreamGone: it does not hold the alert for the receivers that
	// relayed it (resolved, or routed elsewhere now).
	upstreamGone upstreamState = iota
	upstreamActive
	upstreamSuppressed
)

// about says what the answer of the Alertmanager at externalURL says of
// the alert: held for one of receivers, and silenced or inhibited; with
// the mark of a suppressed one.
func (ans *amAnswer) about(fp model.Fingerprint, externalURL string, receivers []string) (upstreamState, *upstreamMark) {
	ga := ans.alerts[fp]
	if ga == nil || !slices.ContainsFunc(ga.Receivers, func(r *models.ReceiverReference) bool {
		return r != nil && r.Name != nil && slices.Contains(receivers, *r.Name)
	}) {
		return upstreamGone, nil
	}
	st := ga.Status
	if len(st.SilencedBy) == 0 && len(st.InhibitedBy) == 0 {
		return upstreamActive, nil
	}
	m := &upstreamMark{URL: externalURL, SilencedBy: slices.Sorted(slices.Values(st.SilencedBy)),
		InhibitedBy: slices.Sorted(slices.Values(st.InhibitedBy))}
	switch {
	case len(m.SilencedBy) > 0:
		// As alertd's silences: the one ending last is named.
		by, details := m.SilencedBy[0], ""
		var end time.Time
		for _, id := range m.SilencedBy {
			sil := ans.silences[id]
			if sil == nil || sil.EndsAt == nil || !time.Time(*sil.EndsAt).After(end) {
				continue
			}
			by, end = id, time.Time(*sil.EndsAt)
			details = " until " + end.UTC().Format(time.RFC3339)
			if sil.CreatedBy != nil && *sil.CreatedBy != "" {
				details += ", created by " + *sil.CreatedBy
			}
			if sil.Comment != nil && *sil.Comment != "" {
				details += ": " + *sil.Comment
			}
		}
		m.Reason = fmt.Sprintf("silenced in the Alertmanager at %s by %s%s", externalURL, by, details)
	default:
		m.Reason = fmt.Sprintf("inhibited in the Alertmanager at %s by the alert %s", externalURL, strings.Join(m.InhibitedBy, ", "))
	}
	m.Reason += "; it notifies alertd again once it no longer does"
	return upstreamSuppressed, m
}

// receiversAt returns the receivers of the Alertmanager at externalURL
// among sources.
func receiversAt(sources []relaySource, externalURL string) []string {
	var out []string
	for _, s := range sources {
		if s.ExternalURL == externalURL {
			out = append(out, s.Receiver)
		}
	}
	return out
}

// checkLeftOut asks, off the webhook's path, the Alertmanager of the
// check c about the alerts it holds (store.leftOut held them): those it
// silences or inhibits for c's receiver are suppressed and fire on, those
// it has active are released, and the others resolve, as they do when it
// can't be asked. When alertd stops before the answer, they stay held,
// and kept so, for the next start to ask again (resume).
func (u *upstream) checkLeftOut(c *upstreamCheck) {
	u.wg.Go(func() {
		ans, err := u.ask(u.ctx, c.URL, false)
		if err != nil && u.ctx.Err() != nil {
			return
		}
		u.mu.Lock()
		defer u.mu.Unlock()
		why := c.reason()
		if err != nil {
			why += "; its API could not say whether it silences or inhibits it (" + err.Error() + ")"
		} else {
			why += "; its API no longer lists it firing for the receiver"
		}
		u.settle(c, ans, why)
	})
}

// settle applies the answer ans (nil: none) of the check c to the alerts
// it holds; those to resolve resolve with the reason why. Called with
// u.mu held.
func (u *upstream) settle(c *upstreamCheck, ans *amAnswer, why string) {
	now := u.now()
	resolve, out := u.store.settleLeftOut(u.ctx, now, c, ans)
	if len(out) > 0 {
		if err := u.store.put(out...); err != nil {
			u.logger.Error("Failed to hand alerts to the notifier", "err", err)
		}
	}
	if len(resolve) == 0 {
		return
	}
	if err := u.store.receive(u.ctx, now, SourceAlertmanager, resolve, why); err != nil {
		u.logger.Error("Failed to hand alerts to the notifier", "err", err)
	}
}

// resume asks again about the alerts restored held (pushed_alerts.json):
// alertd stopped before their check answered. With the checks turned off
// since, they resolve, as they would have without the checks.
func (u *upstream) resume() {
	for _, c := range u.store.awaitingChecks(u.now()) {
		if u.enabled() {
			u.checkLeftOut(c)
			continue
		}
		u.mu.Lock()
		u.settle(c, nil, c.reason())
		u.mu.Unlock()
	}
}

// checkAll asks every Alertmanager that relayed a firing alert about its
// alerts, and applies the answers.
func (u *upstream) checkAll(ctx context.Context) {
	sources := u.store.relayedFrom(u.now())
	answers := map[string]*amAnswer{}
	for _, ext := range slices.Sorted(maps.Keys(sources)) {
		if ans, err := u.ask(ctx, ext, true); err == nil {
			answers[ext] = ans
		}
	}
	if len(answers) == 0 {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	now := u.now()
	grace := time.Duration(u.cfg().Intake.ResolveTimeout)
	extend := time.Duration(u.cfg().Intake.AlertmanagerResolveTimeout)
	resolved, out := u.store.applyChecks(ctx, now, answers, grace, extend)
	if len(out) > 0 {
		if err := u.store.put(out...); err != nil {
			u.logger.Error("Failed to hand alerts to the notifier", "err", err)
		}
	}
	for _, r := range resolved {
		if err := u.store.receive(ctx, now, SourceAlertmanager, []*Alert{r.alert}, r.reason); err != nil {
			u.logger.Error("Failed to hand alerts to the notifier", "err", err)
		}
	}
}

// relayedFrom returns the external URLs of the Alertmanagers that relayed
// the alerts firing at now.
func (s *store) relayedFrom(now time.Time) map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]bool{}
	for _, a := range s.alerts {
		if a.Source != SourceAlertmanager || a.ResolvedAt(now) {
			continue
		}
		for _, rs := range a.relayFrom {
			out[rs.ExternalURL] = true
		}
	}
	return out
}

// settleLeftOut applies what the Alertmanager's answer ans (nil: none)
// to the check c says of the alerts c holds that still fire: suppressed
// there, they are suppressed here; active there, released. It returns the
// others, resolved at now, to receive (they stay held until then), and
// the alerts to hand to the notifier. An alert a webhook delivered again
// since, or that resolved, is no longer held by c. A release runs the
// stages and may trigger actions: commit writes and sends what they decided.
func (s *store) settleLeftOut(ctx context.Context, now time.Time, c *upstreamCheck, ans *amAnswer) ([]*Alert, []*amalert.Alert) {
	defer s.commit()
	s.mu.Lock()
	defer s.mu.Unlock()
	var (
		resolve []*Alert
		out     []*amalert.Alert
	)
	for fp, a := range s.alerts {
		if !c.same(a.awaiting) || a.Source != SourceAlertmanager || a.ResolvedAt(now) {
			continue
		}
		state, mark := upstreamGone, (*upstreamMark)(nil)
		if ans != nil {
			state, mark = ans.about(fp, c.URL, []string{c.Receiver})
		}
		if state == upstreamGone {
			resolve = append(resolve, a.resolvedCopy(now))
			continue
		}
		a.awaiting = nil
		s.pushedGen++
		if state == upstreamSuppressed {
			a.upstream = mark
			s.runStages(ctx, now, a, true)
			continue
		}
		if s.reconsider(ctx, now, a, "its Alertmanager's API lists it firing for the receiver "+c.Receiver+", neither silenced nor inhibited") {
			out = append(out, amalert.New(a.Alert, a.UpdatedAt, a.Timeout))
		}
	}
	slices.SortFunc(resolve, func(x, y *Alert) int { return cmp.Compare(x.Labels.Fingerprint(), y.Labels.Fingerprint()) })
	return resolve, out
}

// mark sets what the API of the Alertmanager that relayed a firing alert
// says of it: mark when it silences or inhibits it, nil when it no longer
// does. A change runs the stages again; it reports whether the alert was
// released, for the notifier. Called with s.mu held.
func (s *store) mark(ctx context.Context, now time.Time, a *Alert, mark *upstreamMark) bool {
	if (a.upstream == nil) == (mark == nil) && (mark == nil || a.upstream.Reason == mark.Reason) {
		return false
	}
	a.upstream = mark
	s.pushedGen++
	if mark != nil {
		if !a.Suppressed {
			s.runStages(ctx, now, a, true)
		} else if a.lastDecision("upstream").Reason != mark.Reason {
			// Another silence, or its end moved.
			a.record(Decision{Time: now, Stage: "upstream", Action: "suppressed", Reason: mark.Reason})
		}
		return false
	}
	return a.Suppressed && s.reconsider(ctx, now, a, "its Alertmanager no longer silences or inhibits it")
}

// awaitingChecks returns the checks the alerts firing at now are held
// for, each once.
func (s *store) awaitingChecks(now time.Time) []*upstreamCheck {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*upstreamCheck
	for _, a := range s.alerts {
		if a.awaiting == nil || a.ResolvedAt(now) || slices.ContainsFunc(out, a.awaiting.same) {
			continue
		}
		out = append(out, a.awaiting)
	}
	slices.SortFunc(out, func(x, y *upstreamCheck) int { return x.At.Compare(y.At) })
	return out
}

// resolvedCopy returns the alert as its source would send it resolved at
// now: with the labels and annotations it sent.
func (a *Alert) resolvedCopy(now time.Time) *Alert {
	return &Alert{
		Alert: model.Alert{Labels: a.Labels.Clone(), Annotations: a.sourceAnnotations.Clone(),
			StartsAt: a.StartsAt, EndsAt: now, GeneratorURL: a.GeneratorURL},
		UpdatedAt: now, Value: math.NaN(),
	}
}

// resolvedUpstream is an alert a check found resolved in its
// Alertmanager, and why.
type resolvedUpstream struct {
	alert  *Alert
	reason string
}

// applyChecks applies the Alertmanagers' answers, by external URL, to
// the relayed alerts that fire at now: suppressed or released as each
// silences or inhibits them or not, their end time moved on (to now plus
// extend) while one of them still holds them; resolved once every one
// that relayed an alert answered twice in a row, having run for grace
// each time, without it. It returns the resolved alerts, to receive, and
// the alerts to hand to the notifier. Releases run the stages and may
// trigger actions: commit writes and sends what they decided.
func (s *store) applyChecks(ctx context.Context, now time.Time, answers map[string]*amAnswer, grace, extend time.Duration) ([]resolvedUpstream, []*amalert.Alert) {
	defer s.commit()
	s.mu.Lock()
	defer s.mu.Unlock()
	var (
		resolved []resolvedUpstream
		out      []*amalert.Alert
	)
	for fp, a := range s.alerts {
		if a.Source != SourceAlertmanager || a.ResolvedAt(now) || len(a.relayFrom) == 0 || a.awaiting != nil {
			// Held, it waits for the check of the notification that
			// left it out.
			continue
		}
		var (
			fires, gone = false, true
			mark        *upstreamMark
			goneFrom    []string
		)
		for _, ext := range slices.Sorted(maps.Keys(relayURLs(a.relayFrom))) {
			ans := answers[ext]
			if ans == nil || a.relayedAt.After(ans.asked) {
				// Not answered, or delivered since it answered.
				gone = false
				continue
			}
			receivers := receiversAt(a.relayFrom, ext)
			switch state, m := ans.about(fp, ext, receivers); state {
			case upstreamActive:
				fires, gone = true, false
			case upstreamSuppressed:
				gone = false
				if mark == nil {
					mark = m
				}
			default:
				if ans.started.After(ans.asked.Add(-grace)) {
					gone = false // it may not have been sent its alerts again yet
				}
				goneFrom = append(goneFrom, fmt.Sprintf("the Alertmanager at %s for receiver %s", ext, strings.Join(receivers, ", ")))
			}
		}
		if !gone {
			a.missed = 0
		}
		switch {
		case fires || mark != nil:
			if fires {
				mark = nil
			}
			if s.mark(ctx, now, a, mark) {
				out = append(out, amalert.New(a.Alert, a.UpdatedAt, a.Timeout))
			}
			// Firing there is as good as a delivery: it does not time
			// out while it fires there. Nor does the notifier's copy,
			// suppressed or not: timed out, its resolution would be sent
			// (suppression.notify_resolved) while it fires there.
			if a.Timeout && a.EndsAt.Before(now.Add(extend/2)) {
				a.EndsAt, a.UpdatedAt = now.Add(extend), now
				s.pushedGen++
				out = append(out, amalert.New(a.Alert, a.UpdatedAt, a.Timeout))
			}
		case gone:
			a.missed++
			if a.missed < upstreamMisses {
				continue
			}
			resolved = append(resolved, resolvedUpstream{
				alert: a.resolvedCopy(now),
				reason: fmt.Sprintf("no longer fires in %s: %d checks of its API in a row (GET /api/v2/alerts) did not list it",
					strings.Join(goneFrom, " nor in "), upstreamMisses),
			})
		}
	}
	slices.SortFunc(resolved, func(x, y resolvedUpstream) int {
		return cmp.Compare(x.alert.Labels.Fingerprint(), y.alert.Labels.Fingerprint())
	})
	return resolved, out
}

// relayURLs returns the external URLs of sources.
func relayURLs(sources []relaySource) map[string]bool {
	out := map[string]bool{}
	for _, s := range sources {
		out[s.ExternalURL] = true
	}
	return out
}
