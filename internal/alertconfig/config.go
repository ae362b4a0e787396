// Package alertconfig holds alertd's configuration file: Prometheus's global,
// rule_files and scrape_configs sections and Alertmanager's route and
// receivers, parsed strictly with errors that name file and line.
package alertconfig

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	amconfig "github.com/prometheus/alertmanager/config"
	amcommon "github.com/prometheus/alertmanager/config/common"
	"github.com/prometheus/alertmanager/notify/webhook"
	amlabels "github.com/prometheus/alertmanager/pkg/labels"
	amtemplate "github.com/prometheus/alertmanager/template"
	"github.com/prometheus/alertmanager/timeinterval"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/promql/parser"
	yamlv2 "go.yaml.in/yaml/v2"
	"gopkg.in/yaml.v3"

	"github.com/modelmon/modelmon/anomaly"
	"github.com/modelmon/modelmon/classify"
	"github.com/modelmon/modelmon/internal/config"
)

// Config is alertd's configuration file. Its sections keep the formats users
// already write: `global`, `rule_files` and `scrape_configs` as in
// prometheus.yml, `route` and `receivers` as in alertmanager.yml.
type Config struct {
	// Global holds Prometheus's global section: scrape and evaluation
	// intervals, rule query offset and external labels.
	Global Global `yaml:"global"`
	// RuleFiles are globs of Prometheus rule files, relative to the
	// configuration file.
	RuleFiles []string `yaml:"rule_files"`
	// ScrapeConfigs are what the embedded engine scrapes (static_configs,
	// file_sd_configs, kubernetes_sd_configs …). Unused with a remote data source.
	ScrapeConfigs []*promconfig.ScrapeConfig `yaml:"scrape_configs"`
	// Datasource, when its URL is set, makes rules query a remote
	// Prometheus-compatible API instead of the embedded engine.
	Datasource Datasource `yaml:"datasource"`
	// Intake configures alerts that arrive over the API.
	Intake Intake `yaml:"intake"`
	// AnomalyDetectors score the series of PromQL expressions for anomalies.
	AnomalyDetectors []*AnomalyDetector `yaml:"anomaly_detectors"`
	// Silences keep the alerts they select from notifications for a
	// while, as Alertmanager's do; more come through the API.
	Silences []*Silence `yaml:"silences"`
	// MaintenanceWindows keep the alerts they select from notifications
	// during recurring time intervals; more come through the API.
	MaintenanceWindows []*MaintenanceWindow `yaml:"maintenance_windows"`
	// InhibitRules are Alertmanager's: an alert the target matchers select
	// is kept from notifications while an alert the source matchers select
	// fires with the same values of the equal labels.
	InhibitRules []*InhibitRule `yaml:"inhibit_rules"`
	// Suppression holds alerts that fired only briefly, those that flap,
	// those of a model just deployed and likely false positives.
	Suppression Suppression `yaml:"suppression"`
	// Classification, when present, gives every alert a category, priority,
	// action and false-positive probability (see the classify package).
	Classification *Classification `yaml:"classification"`
	// Route is Alertmanager's routing tree.
	Route *amconfig.Route `yaml:"route"`
	// TimeIntervals are Alertmanager's named time intervals, which routes
	// name in mute_time_intervals and active_time_intervals;
	// MuteTimeIntervals is their deprecated spelling.
	TimeIntervals     []*TimeInterval `yaml:"time_intervals"`
	MuteTimeIntervals []*TimeInterval `yaml:"mute_time_intervals"`
	// Receivers are the routes' destinations.
	Receivers []*Receiver `yaml:"receivers"`
	// Templates are globs of Go template files, relative to the
	// configuration file, that notifications' templates can use besides
	// Alertmanager's defaults, as in alertmanager.yml.
	Templates []string `yaml:"templates"`
	// Actions are retrain/deploy webhooks into CI, with guardrails (see
	// actions.go).
	Actions []*Action `yaml:"actions"`
	// Escalation holds the escalation policies of incidents, matched in
	// order (escalation.go).
	Escalation []*EscalationPolicy `yaml:"escalation_policies"`

	// Prometheus is the global and scrape_configs sections loaded by
	// Prometheus's own config.Load, as its scrape manager requires.
	Prometheus *promconfig.Config `yaml:"-"`
}

// Datasource is a remote Prometheus-compatible query API.
type Datasource struct {
	// URL is the API's base URL, e.g. http://prometheus:9090.
	URL string `yaml:"url"`
	// Timeout bounds each query: the API gets it as the query's timeout
	// parameter, and alertd waits a tenth longer for the answer. Default 30s.
	Timeout model.Duration `yaml:"timeout"`
	// HTTPClientConfig holds basic_auth, authorization (bearer), oauth2,
	// tls_config and proxy settings, as in a Prometheus scrape config.
	HTTPClientConfig commoncfg.HTTPClientConfig `yaml:",inline"`
}

// Intake configures alerts pushed to alertd.
type Intake struct {
	// ResolveTimeout is how long a pushed alert without endsAt stays firing
	// after it was last received, as Alertmanager's resolve_timeout. Default 5m.
	ResolveTimeout model.Duration `yaml:"resolve_timeout"`
	// AlertmanagerResolveTimeout is ResolveTimeout for the firing alerts
	// an Alertmanager's webhook delivers: it sends them without an end
	// and again only at its route's repeat_interval, so they last twice
	// that plus a group_interval. Default 8h5m, for Alertmanager's
	// defaults (4h, 5m).
	AlertmanagerResolveTimeout model.Duration `yaml:"alertmanager_resolve_timeout"`
	// AlertmanagerAPI is how alertd asks the Alertmanagers that relay
	// alerts to its webhook which of them still fire there.
	AlertmanagerAPI AlertmanagerAPI `yaml:"alertmanager_api"`
}

// AlertmanagerAPI configures alertd's checks of the Alertmanagers that
// relay alerts to its webhook intake: at the externalURL their webhooks
// name, it asks their API (GET /api/v2/alerts, /api/v2/status) which of
// the relayed alerts still fire there, and which they silence or inhibit.
type AlertmanagerAPI struct {
	// CheckInterval is how often alertd asks each of them; 0 never asks,
	// and alertd then knows only what the webhooks say. Default 1m.
	CheckInterval model.Duration `yaml:"check_interval"`
	// Timeout bounds each check of one Alertmanager. Default 10s.
	Timeout model.Duration `yaml:"timeout"`
	// URLs, when set, are the only Alertmanagers alertd asks: a webhook
	// naming another externalURL is taken at its word. Required with
	// credentials, so that they go only to the Alertmanagers listed, not
	// to whatever URL a webhook delivery names.
	URLs []string `yaml:"urls,omitempty"`
	// HTTPClientConfig holds basic_auth, authorization, oauth2,
	// tls_config and proxy settings for every Alertmanager's API.
	HTTPClientConfig commoncfg.HTTPClientConfig `yaml:",inline"`
}

// DefaultAlertmanagerAPI is the default of intake.alertmanager_api.
var DefaultAlertmanagerAPI = AlertmanagerAPI{
	CheckInterval:    model.Duration(time.Minute),
	Timeout:          model.Duration(10 * time.Second),
	HTTPClientConfig: commoncfg.DefaultHTTPClientConfig,
}

// UnmarshalYAML sets the defaults, so that check_interval: 0 turns the
// checks off.
func (c *AlertmanagerAPI) UnmarshalYAML(unmarshal func(any) error) error {
	*c = DefaultAlertmanagerAPI
	type plain AlertmanagerAPI
	if err := unmarshal((*plain)(c)); err != nil {
		return err
	}
	if c.CheckInterval < 0 {
		return errors.New("intake: alertmanager_api: check_interval must not be negative")
	}
	if c.Timeout <= 0 {
		return errors.New("intake: alertmanager_api: timeout must be positive")
	}
	for i, raw := range c.URLs {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("intake: alertmanager_api: urls[%d] %q is not an http(s) URL", i, raw)
		}
	}
	h := c.HTTPClientConfig
	hasCredentials := h.BasicAuth != nil || h.Authorization != nil || h.OAuth2 != nil ||
		h.BearerToken != "" || h.BearerTokenFile != "" ||
		h.TLSConfig.CertFile != "" || h.TLSConfig.Cert != "" || h.TLSConfig.CertRef != ""
	if hasCredentials && len(c.URLs) == 0 && c.CheckInterval > 0 {
		return errors.New("intake: alertmanager_api: with credentials, urls must list the Alertmanagers they may go to (a webhook delivery names its own externalURL)")
	}
	return nil
}

// Allows reports whether alertd may ask the Alertmanager whose webhooks
// name externalURL.
func (c *AlertmanagerAPI) Allows(externalURL string) bool {
	if len(c.URLs) == 0 {
		return true
	}
	norm := func(s string) string { return strings.TrimSuffix(strings.TrimSpace(s), "/") }
	return slices.ContainsFunc(c.URLs, func(u string) bool { return norm(u) == norm(externalURL) })
}

// AnomalyDetector evaluates a PromQL expression every interval and scores
// each resulting series against its own history. The scores are written as
// alertd_anomaly_score, alertd_anomaly_expected, alertd_anomaly_band_lower
// and alertd_anomaly_band_upper series with the detector's name and the
// series' labels, so that alerting rules can use them.
type AnomalyDetector struct {
	// Name becomes the detector label; unique.
	Name string `yaml:"name"`
	// Expr is the PromQL expression whose series are scored.
	Expr string `yaml:"expr"`
	// Interval between evaluations; default global.evaluation_interval.
	Interval model.Duration `yaml:"interval"`
	// Algorithm is one of the anomaly package's algorithms; default the
	// default one.
	Algorithm string `yaml:"algorithm"`
	// MinHistory is how many points a series needs before it is scored;
	// 0 means the algorithm's default.
	MinHistory int `yaml:"min_history"`
	// History is how far back the series are replayed into the detectors
	// when alertd starts, so that a restart does not start learning over.
	// Default 1d; 0s disables replay.
	History *model.Duration `yaml:"history"`
	// MaxSeries caps the series scored; more are skipped and counted.
	// Default 1000.
	MaxSeries int `yaml:"max_series"`
	// ResetOnNewVersion forgets a series' history when the model it
	// belongs to (its model label) changes version in modelmon_model_info,
	// so a deploy is not scored as an anomaly. Default true.
	ResetOnNewVersion *bool `yaml:"reset_on_new_version"`
	// Labels are added to the output series.
	Labels map[string]string `yaml:"labels"`
}

// Silence is a silence from the configuration file.
type Silence struct {
	// Matchers are in Alertmanager's syntax; each string may hold several.
	Matchers []string `yaml:"matchers"`
	// StartsAt defaults to the beginning of time; EndsAt is required.
	StartsAt  time.Time `yaml:"starts_at"`
	EndsAt    time.Time `yaml:"ends_at"`
	CreatedBy string    `yaml:"created_by"`
	Comment   string    `yaml:"comment"`
}

// MaintenanceWindow keeps the alerts its matchers select from
// notifications while the time is within one of its time intervals, until
// it expires.
type MaintenanceWindow struct {
	// Name is unique among the configuration's windows.
	Name string `yaml:"name"`
	// Matchers are in Alertmanager's syntax; each string may hold several.
	Matchers []string `yaml:"matchers"`
	// TimeIntervals are Alertmanager's time intervals (times, weekdays,
	// days_of_month, months, years, location); the window applies while
	// the time is within any of them.
	TimeIntervals []timeinterval.TimeInterval `yaml:"time_intervals"`
	// ExpiresAt, when set, ends the window for good.
	ExpiresAt *time.Time `yaml:"expires_at,omitempty"`

	// intervalErrs are the time intervals that did not parse, by index;
	// validate reports them with the window and the line.
	intervalErrs []indexedError
}

type indexedError struct {
	i   int
	err error
}

// maintenanceWindowYAML is MaintenanceWindow as written, its time
// intervals not parsed yet.
type maintenanceWindowYAML struct {
	Name          string     `yaml:"name"`
	Matchers      []string   `yaml:"matchers"`
	TimeIntervals []any      `yaml:"time_intervals"`
	ExpiresAt     *time.Time `yaml:"expires_at"`
}

// UnmarshalYAML parses each time interval on its own, strictly, so that a
// bad one is reported with the window, its index and its line.
func (w *MaintenanceWindow) UnmarshalYAML(unmarshal func(any) error) error {
	var raw maintenanceWindowYAML
	if err := unmarshal(&raw); err != nil {
		return err
	}
	*w = MaintenanceWindow{Name: raw.Name, Matchers: raw.Matchers, ExpiresAt: raw.ExpiresAt}
	for i, ti := range raw.TimeIntervals {
		b, err := yamlv2.Marshal(ti)
		if err == nil {
			var t timeinterval.TimeInterval
			if err = yamlv2.UnmarshalStrict(b, &t); err == nil {
				w.TimeIntervals = append(w.TimeIntervals, t)
				continue
			}
		}
		w.intervalErrs = append(w.intervalErrs, indexedError{i, err})
	}
	return nil
}

// Suppression configures the hold, flap, deploy and learned stages of the
// pipeline.
type Suppression struct {
	// MinFiringDuration holds an alert until it has fired this long; 0
	// disables the hold.
	MinFiringDuration model.Duration `yaml:"min_firing_duration"`
	// Flapping detects alerts that keep changing state.
	Flapping Flapping `yaml:"flapping"`
	// Deploy holds the alerts of a model that was just deployed.
	Deploy DeploySuppression `yaml:"deploy"`
	// Learned holds alerts the classifier finds likely false positives.
	Learned LearnedSuppression `yaml:"learned"`
	// NotifyResolved sends the resolution of an alert that a silence or a
	// stage suppressed after it was notified firing, to the receivers told
	// it fired (with send_resolved); Alertmanager keeps it back, and
	// incidents opened by the firing stay open (alertmanager#226).
	NotifyResolved bool `yaml:"notify_resolved"`
}

// DeploySuppression holds the alerts of a model for a while after it was
// deployed (a deployment posted to the API, or a new version in
// modelmon_model_info).
type DeploySuppression struct {
	// Hold is how long after a deploy the model's alerts are held; 0
	// disables the stage.
	Hold model.Duration `yaml:"hold"`
	// Categories are the alert categories held; empty holds all.
	Categories []classify.Category `yaml:"categories"`
	// ModelLabel is the alert label naming the model; default "model".
	ModelLabel string `yaml:"model_label"`
}

// LearnedSuppression holds alerts whose learned false-positive probability
// is above a threshold, once the model is confident, for at most MaxHold.
type LearnedSuppression struct {
	// Threshold in (0, 1]; 0 disables the stage.
	Threshold float64 `yaml:"threshold"`
	// MaxHold releases an alert that still fires after this long; default 4h.
	MaxHold model.Duration `yaml:"max_hold"`
}

// Flapping detects flapping with hysteresis: an alert starts flapping with
// StartChanges state changes within Window, and stops with StopChanges or
// fewer.
type Flapping struct {
	// Window is how far back state changes count; default 1h.
	Window model.Duration `yaml:"window"`
	// StartChanges turns flap detection on when above 0.
	StartChanges int `yaml:"start_changes"`
	// StopChanges must be below StartChanges; default StartChanges/2.
	StopChanges int `yaml:"stop_changes"`
}

// Classification configures the classify stage of the pipeline.
type Classification struct {
	// Rules are evaluated in order; the first that matches decides.
	Rules []classify.Rule `yaml:"rules"`
}

// Receiver is a named set of integrations, as in alertmanager.yml.
type Receiver struct {
	Name string `yaml:"name"`
	// WebhookConfigs send Alertmanager's webhook payload (version 4).
	WebhookConfigs []*webhook.WebhookConfig `yaml:"webhook_configs,omitempty"`
	// AlertmanagerConfigs forward alerts to an Alertmanager's API v2.
	AlertmanagerConfigs []*AlertmanagerConfig `yaml:"alertmanager_configs,omitempty"`
	// SlackConfigs post to Slack, through its Web API (threads, updates,
	// buttons) or an incoming webhook.
	SlackConfigs []*SlackConfig `yaml:"slack_configs,omitempty"`
	// PagerDutyConfigs send PagerDuty Events API v2 events.
	PagerDutyConfigs []*PagerDutyConfig `yaml:"pagerduty_configs,omitempty"`
	// AlertmanagerIntegrations are Alertmanager's other integrations
	// (email_configs, msteams_configs, opsgenie_configs …).
	AlertmanagerIntegrations `yaml:",inline"`
}

// DefaultSlackAPIURL is Slack's Web API.
const DefaultSlackAPIURL = "https://slack.com/api/"

// SlackConfig posts notifications to Slack. With a bot token (Web API mode)
// each incident gets one message that later notifications update, with the
// updates in its thread and buttons to acknowledge, resolve or mark it a
// false positive; with an incoming webhook URL it posts only.
type SlackConfig struct {
	amcommon.NotifierConfig `yaml:",inline"`
	// APIURL is the Web API's base URL; default https://slack.com/api/.
	APIURL string `yaml:"api_url,omitempty"`
	// Token (or the file TokenFile names) is a bot token: Web API mode.
	Token     commoncfg.Secret `yaml:"token,omitempty"`
	TokenFile string           `yaml:"token_file,omitempty"`
	// WebhookURL (or WebhookURLFile) is an incoming webhook: post only.
	WebhookURL     commoncfg.Secret `yaml:"webhook_url,omitempty"`
	WebhookURLFile string           `yaml:"webhook_url_file,omitempty"`
	// Channel is the channel to post in; required in Web API mode.
	Channel string `yaml:"channel,omitempty"`
	// SigningSecret (or SigningSecretFile) verifies the requests Slack
	// sends to /api/v1/slack/interactions when a button is pressed.
	SigningSecret     commoncfg.Secret `yaml:"signing_secret,omitempty"`
	SigningSecretFile string           `yaml:"signing_secret_file,omitempty"`
	// Title and Text are Go templates (Alertmanager's template data);
	// empty uses alertd's.
	Title string `yaml:"title,omitempty"`
	Text  string `yaml:"text,omitempty"`
	// Timeout bounds each request. Default 10s.
	Timeout    model.Duration              `yaml:"timeout,omitempty"`
	HTTPConfig *commoncfg.HTTPClientConfig `yaml:"http_config,omitempty"`
}

// WebAPI reports whether c posts through the Web API (a bot token) rather
// than an incoming webhook.
func (c *SlackConfig) WebAPI() bool { return c.Token != "" }

// UnmarshalYAML sets the defaults: send_resolved true, the Web API's URL.
func (c *SlackConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*c = SlackConfig{NotifierConfig: amcommon.NotifierConfig{VSendResolved: true}, APIURL: DefaultSlackAPIURL}
	type plain SlackConfig
	return unmarshal((*plain)(c))
}

// DefaultPagerDutyURL is PagerDuty's Events API v2.
const DefaultPagerDutyURL = "https://events.pagerduty.com/v2/enqueue"

// PagerDutySeverities are the severities of PagerDuty's Events API v2.
var PagerDutySeverities = []string{"critical", "error", "warning", "info"}

// PagerDutyConfig sends PagerDuty Events API v2 events: trigger while the
// group fires, resolve when it resolves, acknowledge when it is
// acknowledged, all with the group's (incident's) dedup_key.
type PagerDutyConfig struct {
	amcommon.NotifierConfig `yaml:",inline"`
	// URL is the Events API's enqueue endpoint.
	URL string `yaml:"url,omitempty"`
	// RoutingKey (or RoutingKeyFile) is the integration key of the service.
	RoutingKey     commoncfg.Secret `yaml:"routing_key,omitempty"`
	RoutingKeyFile string           `yaml:"routing_key_file,omitempty"`
	// Severity is the event's severity for alerts without a priority
	// annotation, or with one SeverityByPriority does not map. Default error.
	Severity string `yaml:"severity,omitempty"`
	// SeverityByPriority maps the priority annotation the classifier sets
	// to a severity. Default critical→critical, high→error,
	// medium→warning, low→info.
	SeverityByPriority map[string]string `yaml:"severity_by_priority,omitempty"`
	// Source is the payload's source; empty uses the alerts' common
	// model, instance or job label, else "alertd".
	Source string `yaml:"source,omitempty"`
	// Timeout bounds each request. Default 10s.
	Timeout    model.Duration              `yaml:"timeout,omitempty"`
	HTTPConfig *commoncfg.HTTPClientConfig `yaml:"http_config,omitempty"`
}

// UnmarshalYAML sets the defaults: send_resolved true, PagerDuty's URL,
// severity error and the priority mapping.
func (c *PagerDutyConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*c = PagerDutyConfig{NotifierConfig: amcommon.NotifierConfig{VSendResolved: true}, URL: DefaultPagerDutyURL, Severity: "error"}
	type plain PagerDutyConfig
	if err := unmarshal((*plain)(c)); err != nil {
		return err
	}
	if c.SeverityByPriority == nil {
		c.SeverityByPriority = map[string]string{"critical": "critical", "high": "error", "medium": "warning", "low": "info"}
	}
	return nil
}

// AlertmanagerConfig forwards a group's alerts to an Alertmanager, which then
// does its own grouping, silencing and notification.
type AlertmanagerConfig struct {
	amcommon.NotifierConfig `yaml:",inline"`
	// URL is the Alertmanager's base URL; alerts go to URL/api/v2/alerts.
	URL string `yaml:"url"`
	// Timeout bounds each request. Default 10s.
	Timeout    model.Duration              `yaml:"timeout"`
	HTTPConfig *commoncfg.HTTPClientConfig `yaml:"http_config,omitempty"`
}

// Default is the configuration an empty file gives: Prometheus's global
// defaults, no rules or targets, and a root route to a receiver that does
// nothing (alerts still show in the API).
func Default() *Config {
	return &Config{Global: DefaultGlobal(), Intake: Intake{AlertmanagerAPI: DefaultAlertmanagerAPI}}
}

// UnmarshalYAML fills defaults and checks the receivers, as Alertmanager's
// config does.
func (c *AlertmanagerConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*c = AlertmanagerConfig{NotifierConfig: amcommon.NotifierConfig{VSendResolved: true}}
	type plain AlertmanagerConfig
	if err := unmarshal((*plain)(c)); err != nil {
		return err
	}
	if c.URL == "" {
		return errors.New("alertmanager_configs: missing url")
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("alertmanager_configs: invalid url %q: want http(s)://host[:port]", c.URL)
	}
	if c.Timeout == 0 {
		c.Timeout = model.Duration(10 * time.Second)
	}
	return nil
}

// Load parses an alertd configuration from s, resolving relative paths
// against dir. Unknown fields are errors.
func Load(s, dir string) (*Config, error) {
	return load([]byte(s), "", dir)
}

// resolveGlobs checks the file globs of the key and makes the relative ones
// relative to dir, the configuration file's.
func resolveGlobs(key string, globs []string, dir string) error {
	for i, g := range globs {
		if g == "" {
			return errorAt(fmt.Errorf("%s: entry %d is empty", key, i), key, i)
		}
		if _, err := filepath.Match(g, ""); err != nil {
			return errorAt(fmt.Errorf("%s: invalid pattern %q: %w", key, g, err), key, i)
		}
		if dir != "" && !filepath.IsAbs(g) {
			globs[i] = filepath.Join(dir, g)
		}
	}
	return nil
}

// LoadFile parses the alertd configuration file at path. Errors name
// the file, and the line where they have one.
func LoadFile(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return load(b, path, filepath.Dir(path))
}

func load(b []byte, file, dir string) (*Config, error) {
	cfg := Default()
	if err := yamlv2.UnmarshalStrict(b, cfg); err != nil {
		return nil, yamlLinesError(file, b, err)
	}
	if err := cfg.validate(dir); err != nil {
		line := ""
		var fe *fieldError
		if errors.As(err, &fe) {
			line = lineOf(b, fe.path)
		}
		return nil, config.Prefix(file, line, err.Error())
	}
	pc, err := prometheusSections(b, dir)
	if err != nil {
		return nil, blamed(file, b, err, func(b []byte) error {
			_, err := prometheusSections(b, dir)
			return err
		})
	}
	if err := cfg.alertmanagerReceivers(b, dir); err != nil {
		return nil, blamed(file, b, err, func(b []byte) error {
			c := Default()
			if err := yamlv2.Unmarshal(b, c); err != nil {
				return err
			}
			return c.alertmanagerReceivers(b, dir)
		})
	}
	cfg.Prometheus = pc
	return cfg, nil
}

// blamed is err, which decode gives for the document b too, prefixed with
// the file, and the line and path of the value it comes from (config.Blame).
func blamed(file string, b []byte, err error, decode func([]byte) error) error {
	msg := err.Error()
	line, path := config.Blame(b, msg, decode)
	if line != "" {
		msg = path + ": " + msg
	}
	return config.Prefix(file, line, msg)
}

// prometheusSections loads the global and scrape_configs sections with
// Prometheus's config.Load, so that its defaults and checks apply exactly and
// its scrape manager accepts the result. The strict pass over the whole file
// has already reported unknown fields with their lines.
func prometheusSections(b []byte, dir string) (*promconfig.Config, error) {
	var all yamlv2.MapSlice
	if err := yamlv2.Unmarshal(b, &all); err != nil {
		return nil, err
	}
	var part yamlv2.MapSlice
	for _, it := range all {
		switch k, _ := it.Key.(string); k {
		case "global":
			// Without Alertmanager's keys, which Prometheus does not know.
			if ms, ok := it.Value.(yamlv2.MapSlice); ok {
				it.Value, _ = splitGlobal(ms)
			}
			part = append(part, it)
		case "scrape_configs":
			part = append(part, it)
		}
	}
	out, err := yamlv2.Marshal(part)
	if err != nil {
		return nil, err
	}
	pc, err := promconfig.Load(string(out), nil)
	if err != nil {
		return nil, err
	}
	if dir != "" {
		pc.SetDirectory(dir)
	}
	return pc, nil
}

// yamlLinesError rewrites yaml.v2's errors (Prometheus's and Alertmanager's
// config types decode with it) as "file:line: message", one per line.
// yaml.v2 gives no line for a value its type rejects, such as a bad
// duration, a matcher that does not parse or an address without a port;
// config.Blame finds that value in the document b instead.
func yamlLinesError(file string, b []byte, err error) error {
	var te *yamlv2.TypeError
	if errors.As(err, &te) {
		return config.LineErrors(file, b, te.Errors)
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if line, path := config.Blame(b, err.Error(), func(b []byte) error { return yamlv2.UnmarshalStrict(b, Default()) }); line != "" {
		return config.Prefix(file, line, path+": "+msg)
	}
	// A syntax error says its line: "line 3: did not find expected key".
	return config.LineErrors(file, b, []string{msg})
}

// fieldError is a validation error about the value at path (mapping keys
// and sequence indices from the document's root), so that load can name
// its line.
type fieldError struct {
	path []any
	err  error
}

func (e *fieldError) Error() string { return e.err.Error() }
func (e *fieldError) Unwrap() error { return e.err }

func errorAt(err error, path ...any) error { return &fieldError{path: path, err: err} }

// lineOf returns the line of the value at path in the YAML document b; ""
// when there is none.
func lineOf(b []byte, path []any) string {
	var doc yaml.Node
	if yaml.Unmarshal(b, &doc) != nil || len(doc.Content) == 0 {
		return ""
	}
	n := doc.Content[0]
	for _, p := range path {
		var next *yaml.Node
		switch k := p.(type) {
		case string:
			for i := 0; n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == k {
					next = n.Content[i+1]
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && k < len(n.Content) {
				next = n.Content[k]
			}
		}
		if next == nil {
			return ""
		}
		n = next
	}
	return strconv.Itoa(n.Line)
}

func (c *Config) validate(dir string) error {
	if c.Global.EvaluationInterval == 0 {
		c.Global.EvaluationInterval = promconfig.DefaultGlobalConfig.EvaluationInterval
	}
	if c.Global.ScrapeInterval == 0 {
		c.Global.ScrapeInterval = promconfig.DefaultGlobalConfig.ScrapeInterval
	}
	if c.Global.ScrapeTimeout == 0 {
		c.Global.ScrapeTimeout = min(promconfig.DefaultGlobalConfig.ScrapeTimeout, c.Global.ScrapeInterval)
	}
	if c.Global.ScrapeTimeout > c.Global.ScrapeInterval {
		return errors.New("global: scrape_timeout greater than scrape_interval")
	}
	if err := resolveGlobs("rule_files", c.RuleFiles, dir); err != nil {
		return err
	}
	if err := resolveGlobs("templates", c.Templates, dir); err != nil {
		return err
	}
	if len(c.Templates) > 0 {
		if _, err := amtemplate.FromGlobs(c.Templates); err != nil {
			return fmt.Errorf("templates: %w", err)
		}
	}
	jobs := map[string]bool{}
	for i, sc := range c.ScrapeConfigs {
		if sc == nil {
			return errorAt(errors.New("scrape_configs: empty entry"), "scrape_configs", i)
		}
		if err := sc.Validate(c.Global.GlobalConfig); err != nil {
			return errorAt(fmt.Errorf("scrape_configs: %w", err), "scrape_configs", i)
		}
		if jobs[sc.JobName] {
			return errorAt(fmt.Errorf("scrape_configs: found multiple scrape configs with job name %q", sc.JobName), "scrape_configs", i, "job_name")
		}
		jobs[sc.JobName] = true
		if dir != "" {
			sc.SetDirectory(dir)
		}
	}
	if c.Datasource.Timeout == 0 {
		c.Datasource.Timeout = model.Duration(30 * time.Second)
	}
	if c.Datasource.URL != "" {
		if err := checkURL(c.Datasource.URL); err != nil {
			return errorAt(fmt.Errorf("datasource: %w", err), "datasource", "url")
		}
	}
	if err := c.Datasource.HTTPClientConfig.Validate(); err != nil {
		return fmt.Errorf("datasource: %w", err)
	}
	if dir != "" {
		c.Datasource.HTTPClientConfig.SetDirectory(dir)
	}
	if c.Intake.ResolveTimeout == 0 {
		c.Intake.ResolveTimeout = model.Duration(5 * time.Minute)
	}
	if c.Intake.AlertmanagerResolveTimeout == 0 {
		c.Intake.AlertmanagerResolveTimeout = model.Duration(8*time.Hour + 5*time.Minute)
	}
	if err := c.Intake.AlertmanagerAPI.HTTPClientConfig.Validate(); err != nil {
		return fmt.Errorf("intake: alertmanager_api: %w", err)
	}
	if dir != "" {
		c.Intake.AlertmanagerAPI.HTTPClientConfig.SetDirectory(dir)
	}
	if err := c.validateAnomaly(); err != nil {
		return err
	}
	for i, sil := range c.Silences {
		if sil == nil || len(sil.Matchers) == 0 {
			return errorAt(fmt.Errorf("silences: entry %d has no matchers", i), "silences", i)
		}
		var all amlabels.Matchers
		for j, m := range sil.Matchers {
			ms, err := amlabels.ParseMatchers(m)
			if err != nil {
				return errorAt(fmt.Errorf("silences: entry %d: invalid matcher %q: %w", i, m, err), "silences", i, "matchers", j)
			}
			all = append(all, ms...)
		}
		// Checked here, not only when the silences are applied: a
		// reload must fail before any of the file takes effect.
		if all.Matches(model.LabelSet{}) {
			return errorAt(fmt.Errorf("silences: entry %d: matchers must not match the empty label set: at least one needs a non-empty value", i), "silences", i, "matchers")
		}
		if sil.EndsAt.IsZero() || !sil.EndsAt.After(sil.StartsAt) {
			return errorAt(fmt.Errorf("silences: entry %d: ends_at must be set and after starts_at", i), "silences", i)
		}
	}
	if f := &c.Suppression.Flapping; f.StartChanges > 0 {
		if f.Window == 0 {
			f.Window = model.Duration(time.Hour)
		}
		if f.StopChanges == 0 {
			f.StopChanges = f.StartChanges / 2
		}
		if f.StopChanges >= f.StartChanges || f.StopChanges < 0 {
			return errorAt(fmt.Errorf("suppression: flapping: stop_changes (%d) must be below start_changes (%d)", f.StopChanges, f.StartChanges), "suppression", "flapping", "stop_changes")
		}
	}
	if c.Suppression.MinFiringDuration < 0 {
		return errors.New("suppression: min_firing_duration must not be negative")
	}
	if err := c.validateDeploy(); err != nil {
		return err
	}
	if err := c.validateLearned(); err != nil {
		return err
	}
	if err := c.validateInhibit(); err != nil {
		return err
	}
	if err := c.validateMaintenance(); err != nil {
		return err
	}
	if err := c.validateActions(dir); err != nil {
		return err
	}
	if c.Classification != nil {
		for i := range c.Classification.Rules {
			if err := c.Classification.Rules[i].Validate(); err != nil {
				return errorAt(fmt.Errorf("classification: rule %d: %w", i, err), "classification", "rules", i)
			}
		}
	}
	if err := c.validateRouting(dir); err != nil {
		return err
	}
	return c.validateEscalation()
}

func (c *Config) validateDeploy() error {
	d := &c.Suppression.Deploy
	if d.Hold < 0 {
		return errorAt(errors.New("suppression: deploy: hold must not be negative"), "suppression", "deploy", "hold")
	}
	if d.ModelLabel == "" {
		d.ModelLabel = "model"
	}
	if !model.UTF8Validation.IsValidLabelName(d.ModelLabel) {
		return errorAt(fmt.Errorf("suppression: deploy: invalid model_label %q", d.ModelLabel), "suppression", "deploy", "model_label")
	}
	for i, cat := range d.Categories {
		if !slices.Contains(classify.Categories(), cat) {
			return errorAt(fmt.Errorf("suppression: deploy: categories[%d]: unknown category %q, want one of %v", i, cat, classify.Categories()),
				"suppression", "deploy", "categories", i)
		}
	}
	return nil
}

func (c *Config) validateLearned() error {
	l := &c.Suppression.Learned
	if math.IsNaN(l.Threshold) || l.Threshold < 0 || l.Threshold > 1 {
		return errorAt(fmt.Errorf("suppression: learned: threshold %g out of range (0, 1] (0 disables it)", l.Threshold), "suppression", "learned", "threshold")
	}
	if l.MaxHold < 0 {
		return errorAt(errors.New("suppression: learned: max_hold must not be negative"), "suppression", "learned", "max_hold")
	}
	if l.Threshold == 0 {
		return nil
	}
	if l.MaxHold == 0 {
		l.MaxHold = model.Duration(4 * time.Hour)
	}
	if c.Classification == nil {
		return errorAt(errors.New("suppression: learned: needs a classification section, whose false-positive probability it acts on"), "suppression", "learned")
	}
	return nil
}

// InhibitRule is Alertmanager's inhibit rule, read so that an error in its
// matchers or equal labels is reported with the rule's place in the file.
type InhibitRule struct {
	amcommon.InhibitRule `yaml:",inline"`
	err                  error
}

// UnmarshalYAML reads Alertmanager's rule (decodeKeeping).
func (r *InhibitRule) UnmarshalYAML(unmarshal func(any) error) (err error) {
	r.err, err = decodeKeeping(unmarshal, &r.InhibitRule)
	return err
}

// decodeKeeping decodes into v, an Alertmanager type that checks itself,
// and keeps what its checks refuse, for validation to report with its
// place in the file; unknown fields and wrong types fail as elsewhere.
func decodeKeeping(unmarshal func(any) error, v any) (kept, err error) {
	err = unmarshal(v)
	var te *yamlv2.TypeError
	if err != nil && !errors.As(err, &te) {
		return err, nil
	}
	return nil, err
}

func (c *Config) validateInhibit() error {
	for i, r := range c.InhibitRules {
		if r == nil {
			return errorAt(fmt.Errorf("inhibit_rules: entry %d is empty", i), "inhibit_rules", i)
		}
		if r.err != nil {
			return errorAt(fmt.Errorf("inhibit_rules: entry %d: %w", i, r.err), "inhibit_rules", i)
		}
	}
	return nil
}

func (c *Config) validateMaintenance() error {
	names := map[string]bool{}
	for i, w := range c.MaintenanceWindows {
		if w == nil {
			return errorAt(fmt.Errorf("maintenance_windows: entry %d is empty", i), "maintenance_windows", i)
		}
		if w.Name == "" {
			return errorAt(fmt.Errorf("maintenance_windows: entry %d has no name", i), "maintenance_windows", i)
		}
		what := fmt.Sprintf("maintenance_windows: entry %d (%q)", i, w.Name)
		if names[w.Name] {
			return errorAt(fmt.Errorf("%s: name is not unique", what), "maintenance_windows", i, "name")
		}
		names[w.Name] = true
		if len(w.Matchers) == 0 {
			return errorAt(fmt.Errorf("%s: needs at least one matcher", what), "maintenance_windows", i)
		}
		var all amlabels.Matchers
		for j, m := range w.Matchers {
			ms, err := amlabels.ParseMatchers(m)
			if err != nil {
				return errorAt(fmt.Errorf("%s: matchers[%d]: invalid matcher %q: %w", what, j, m, err), "maintenance_windows", i, "matchers", j)
			}
			all = append(all, ms...)
		}
		if all.Matches(model.LabelSet{}) {
			return errorAt(fmt.Errorf("%s: matchers must not match the empty label set: at least one needs a non-empty value", what), "maintenance_windows", i, "matchers")
		}
		if len(w.intervalErrs) > 0 {
			e := w.intervalErrs[0]
			return errorAt(fmt.Errorf("%s: time_intervals[%d]: %s", what, e.i, intervalError(e.err)), "maintenance_windows", i, "time_intervals", e.i)
		}
		if len(w.TimeIntervals) == 0 {
			return errorAt(fmt.Errorf("%s: needs at least one time interval", what), "maintenance_windows", i)
		}
	}
	return nil
}

// intervalError is the message of a time interval's parse error, without
// the line within the interval (the caller names the interval's) and with
// unknown fields said as elsewhere.
func intervalError(err error) string {
	var te *yamlv2.TypeError
	if !errors.As(err, &te) {
		return err.Error()
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, m := range te.Errors {
		if sm := intervalLineRE.FindStringSubmatch(m); sm != nil {
			m = sm[1]
		}
		if sm := intervalFieldRE.FindStringSubmatch(m); sm != nil {
			m = fmt.Sprintf("unknown field %q", sm[1])
		}
		msgs = append(msgs, m)
	}
	return strings.Join(msgs, "; ")
}

var (
	intervalLineRE  = regexp.MustCompile(`^line \d+: (.*)$`)
	intervalFieldRE = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
)

func (c *Config) validateAnomaly() error {
	names := map[string]bool{}
	p := parser.NewParser(parser.Options{})
	for i, d := range c.AnomalyDetectors {
		if d == nil {
			return errorAt(fmt.Errorf("anomaly_detectors: entry %d is empty", i), "anomaly_detectors", i)
		}
		if d.Name == "" {
			return errorAt(fmt.Errorf("anomaly_detectors: entry %d has no name", i), "anomaly_detectors", i)
		}
		if names[d.Name] {
			return errorAt(fmt.Errorf("anomaly_detectors: name %q is not unique", d.Name), "anomaly_detectors", i, "name")
		}
		names[d.Name] = true
		if _, err := p.ParseExpr(d.Expr); err != nil {
			return errorAt(fmt.Errorf("anomaly_detectors: %q: invalid expr: %w", d.Name, err), "anomaly_detectors", i, "expr")
		}
		if d.Interval == 0 {
			d.Interval = c.Global.EvaluationInterval
		}
		if d.Algorithm == "" {
			d.Algorithm = anomaly.Default
		}
		if !slices.Contains(anomaly.Algorithms(), d.Algorithm) {
			return errorAt(fmt.Errorf("anomaly_detectors: %q: unknown algorithm %q (have %v)", d.Name, d.Algorithm, anomaly.Algorithms()), "anomaly_detectors", i, "algorithm")
		}
		if d.MinHistory < 0 || d.MaxSeries < 0 {
			return errorAt(fmt.Errorf("anomaly_detectors: %q: min_history and max_series must not be negative", d.Name), "anomaly_detectors", i)
		}
		if d.History == nil {
			h := model.Duration(24 * time.Hour)
			d.History = &h
		}
		if d.MaxSeries == 0 {
			d.MaxSeries = 1000
		}
		if d.ResetOnNewVersion == nil {
			t := true
			d.ResetOnNewVersion = &t
		}
		for k := range d.Labels {
			if !model.UTF8Validation.IsValidLabelName(k) || k == "detector" || k == model.MetricNameLabel {
				return errorAt(fmt.Errorf("anomaly_detectors: %q: invalid label name %q", d.Name, k), "anomaly_detectors", i, "labels")
			}
		}
	}
	return nil
}

// secret fills *s from file (relative to dir) if it is set; both set is
// an error. The file is read now, at load and reload, so a missing file
// fails the load rather than a notification. Errors name the keys, never
// the secret.
func secret(s *commoncfg.Secret, file, dir, key string) error {
	if file == "" {
		return nil
	}
	if *s != "" {
		return fmt.Errorf("at most one of %s and %s_file must be configured", key, key)
	}
	if dir != "" && !filepath.IsAbs(file) {
		file = filepath.Join(dir, file)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("couldn't read %s_file: %w", key, err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return fmt.Errorf("%s_file %q is empty", key, file)
	}
	*s = commoncfg.Secret(v)
	return nil
}

func (r *Receiver) validateSlack(ri int, dir string) error {
	for i, sc := range r.SlackConfigs {
		at := func(err error, key ...any) error {
			return errorAt(fmt.Errorf("receivers: %q: slack_configs[%d]: %w", r.Name, i, err), append([]any{"receivers", ri, "slack_configs", i}, key...)...)
		}
		if sc == nil {
			return at(errors.New("empty entry"))
		}
		if err := secret(&sc.Token, sc.TokenFile, dir, "token"); err != nil {
			return at(err, "token_file")
		}
		if err := secret(&sc.WebhookURL, sc.WebhookURLFile, dir, "webhook_url"); err != nil {
			return at(err, "webhook_url_file")
		}
		if err := secret(&sc.SigningSecret, sc.SigningSecretFile, dir, "signing_secret"); err != nil {
			return at(err, "signing_secret_file")
		}
		switch {
		case sc.Token != "" && sc.WebhookURL != "":
			return at(errors.New("one of token (Web API) and webhook_url (incoming webhook) must be configured, not both"))
		case sc.Token == "" && sc.WebhookURL == "":
			return at(errors.New("one of token, token_file (Web API), webhook_url or webhook_url_file (incoming webhook) must be configured"))
		case sc.Token != "" && sc.Channel == "":
			return at(errors.New("channel is required with a token"))
		}
		if sc.WebhookURL != "" {
			if err := checkURL(string(sc.WebhookURL)); err != nil {
				// The URL is the secret: don't repeat it.
				return at(errors.New("invalid webhook_url: want http(s)://host[:port]/path"), "webhook_url")
			}
		}
		if err := checkURL(sc.APIURL); err != nil {
			return at(fmt.Errorf("api_url: %w", err), "api_url")
		}
		if !strings.HasSuffix(sc.APIURL, "/") {
			sc.APIURL += "/"
		}
		for _, t := range []struct{ key, text string }{{"title", sc.Title}, {"text", sc.Text}} {
			if _, err := template.New(t.key).Funcs(template.FuncMap(amtemplate.DefaultFuncs)).Parse(t.text); err != nil {
				return at(fmt.Errorf("invalid %s template: %w", t.key, err), t.key)
			}
		}
		if sc.Timeout == 0 {
			sc.Timeout = model.Duration(10 * time.Second)
		}
		if sc.HTTPConfig == nil {
			hc := commoncfg.DefaultHTTPClientConfig
			sc.HTTPConfig = &hc
		}
		if dir != "" {
			sc.HTTPConfig.SetDirectory(dir)
		}
	}
	return nil
}

func (r *Receiver) validatePagerDuty(ri int, dir string) error {
	for i, pc := range r.PagerDutyConfigs {
		at := func(err error, key ...any) error {
			return errorAt(fmt.Errorf("receivers: %q: pagerduty_configs[%d]: %w", r.Name, i, err), append([]any{"receivers", ri, "pagerduty_configs", i}, key...)...)
		}
		if pc == nil {
			return at(errors.New("empty entry"))
		}
		if err := secret(&pc.RoutingKey, pc.RoutingKeyFile, dir, "routing_key"); err != nil {
			return at(err, "routing_key_file")
		}
		if pc.RoutingKey == "" {
			return at(errors.New("one of routing_key and routing_key_file must be configured"))
		}
		if err := checkURL(pc.URL); err != nil {
			return at(fmt.Errorf("url: %w", err), "url")
		}
		if !slices.Contains(PagerDutySeverities, pc.Severity) {
			return at(fmt.Errorf("invalid severity %q, want one of %v", pc.Severity, PagerDutySeverities), "severity")
		}
		for p, sev := range pc.SeverityByPriority {
			if !slices.Contains(PagerDutySeverities, sev) {
				return at(fmt.Errorf("severity_by_priority: invalid severity %q for %q, want one of %v", sev, p, PagerDutySeverities), "severity_by_priority", p)
			}
		}
		if pc.Timeout == 0 {
			pc.Timeout = model.Duration(10 * time.Second)
		}
		if pc.HTTPConfig == nil {
			hc := commoncfg.DefaultHTTPClientConfig
			pc.HTTPConfig = &hc
		}
		if dir != "" {
			pc.HTTPConfig.SetDirectory(dir)
		}
	}
	return nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("invalid url %q: want http(s)://host[:port]", s)
	}
	return nil
}

// TimeInterval is Alertmanager's named time interval, read so that an
// error in it is reported with its place in the file.
type TimeInterval struct {
	amconfig.TimeInterval `yaml:",inline"`
	err                   error
}

// UnmarshalYAML reads Alertmanager's time interval (decodeKeeping).
func (t *TimeInterval) UnmarshalYAML(unmarshal func(any) error) (err error) {
	t.err, err = decodeKeeping(unmarshal, &t.TimeInterval)
	return err
}

// timeIntervalNames returns the names of the time intervals, refusing one
// given twice (in either list), as Alertmanager does.
func (c *Config) timeIntervalNames() (map[string]bool, error) {
	names := map[string]bool{}
	for _, l := range []struct {
		key  string
		list []*TimeInterval
	}{{"time_intervals", c.TimeIntervals}, {"mute_time_intervals", c.MuteTimeIntervals}} {
		for i, ti := range l.list {
			switch {
			case ti == nil:
				return nil, errorAt(fmt.Errorf("%s: entry %d is empty", l.key, i), l.key, i)
			case ti.err != nil:
				return nil, errorAt(fmt.Errorf("%s: entry %d: %w", l.key, i, ti.err), l.key, i)
			case names[ti.Name]:
				return nil, errorAt(fmt.Errorf("%s: time interval %q is not unique", l.key, ti.Name), l.key, i)
			}
			names[ti.Name] = true
		}
	}
	return names, nil
}

// Intervals returns the time intervals by name, both spellings, for
// Alertmanager's timeinterval.NewIntervener.
func (c *Config) Intervals() map[string][]timeinterval.TimeInterval {
	out := map[string][]timeinterval.TimeInterval{}
	for _, ti := range slices.Concat(c.TimeIntervals, c.MuteTimeIntervals) {
		out[ti.Name] = ti.TimeIntervals
	}
	return out
}

// validateRouting applies Alertmanager's own checks to route and receivers:
// unique receiver names, a root route with a receiver and no matchers, every
// referenced receiver and time interval defined.
func (c *Config) validateRouting(dir string) error {
	names := map[string]bool{}
	for i, r := range c.Receivers {
		if r == nil || r.Name == "" {
			return errorAt(errors.New("receivers: receiver without a name"), "receivers", i)
		}
		if names[r.Name] {
			return errorAt(fmt.Errorf("receivers: receiver %q is not unique", r.Name), "receivers", i, "name")
		}
		names[r.Name] = true
		for _, wh := range r.WebhookConfigs {
			if wh.HTTPConfig == nil {
				hc := commoncfg.DefaultHTTPClientConfig
				wh.HTTPConfig = &hc
			}
			if dir != "" {
				wh.HTTPConfig.SetDirectory(dir)
			}
		}
		for _, am := range r.AlertmanagerConfigs {
			if am.HTTPConfig == nil {
				hc := commoncfg.DefaultHTTPClientConfig
				am.HTTPConfig = &hc
			}
			if dir != "" {
				am.HTTPConfig.SetDirectory(dir)
			}
		}
	}
	for i, r := range c.Receivers {
		if err := r.validateSlack(i, dir); err != nil {
			return err
		}
		if err := r.validatePagerDuty(i, dir); err != nil {
			return err
		}
	}
	if c.Route == nil {
		if len(c.Receivers) > 0 {
			return errors.New("route: no route provided for the receivers")
		}
		// No routing: alerts are kept and shown, and go nowhere.
		c.Route = &amconfig.Route{Receiver: "none"}
		c.Receivers = []*Receiver{{Name: "none"}}
		names["none"] = true
	}
	if c.Route.Receiver == "" {
		return errors.New("route: root route must specify a default receiver")
	}
	if len(c.Route.Match) > 0 || len(c.Route.MatchRE) > 0 || len(c.Route.Matchers) > 0 {
		return errors.New("route: root route must not have any matchers")
	}
	if len(c.Route.MuteTimeIntervals) > 0 {
		return errors.New("route: root route must not have any mute time intervals")
	}
	if len(c.Route.ActiveTimeIntervals) > 0 {
		return errors.New("route: root route must not have any active time intervals")
	}
	intervals, err := c.timeIntervalNames()
	if err != nil {
		return err
	}
	// path is where r is in the file, for the line of an error.
	var check func(r *amconfig.Route, path []any) error
	check = func(r *amconfig.Route, path []any) error {
		if r.Receiver != "" && !names[r.Receiver] {
			return errorAt(fmt.Errorf("route: undefined receiver %q used in route", r.Receiver), append(path, "receiver")...)
		}
		for i, n := range r.MuteTimeIntervals {
			if !intervals[n] {
				return errorAt(fmt.Errorf("route: undefined time interval %q used in mute_time_intervals", n), append(path, "mute_time_intervals", i)...)
			}
		}
		for i, n := range r.ActiveTimeIntervals {
			if !intervals[n] {
				return errorAt(fmt.Errorf("route: undefined time interval %q used in active_time_intervals", n), append(path, "active_time_intervals", i)...)
			}
		}
		for i, sub := range r.Routes {
			if err := check(sub, append(slices.Clip(path), "routes", i)); err != nil {
				return err
			}
		}
		return nil
	}
	return check(c.Route, []any{"route"})
}
