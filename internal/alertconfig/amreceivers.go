package alertconfig

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"

	amconfig "github.com/prometheus/alertmanager/config"
	"github.com/prometheus/alertmanager/notify/discord"
	"github.com/prometheus/alertmanager/notify/email"
	"github.com/prometheus/alertmanager/notify/incidentio"
	"github.com/prometheus/alertmanager/notify/jira"
	"github.com/prometheus/alertmanager/notify/mattermost"
	"github.com/prometheus/alertmanager/notify/msteams"
	"github.com/prometheus/alertmanager/notify/msteamsv2"
	"github.com/prometheus/alertmanager/notify/opsgenie"
	"github.com/prometheus/alertmanager/notify/pushover"
	"github.com/prometheus/alertmanager/notify/rocketchat"
	"github.com/prometheus/alertmanager/notify/sns"
	"github.com/prometheus/alertmanager/notify/telegram"
	"github.com/prometheus/alertmanager/notify/victorops"
	"github.com/prometheus/alertmanager/notify/webex"
	"github.com/prometheus/alertmanager/notify/wechat"
	commoncfg "github.com/prometheus/common/config"
	promconfig "github.com/prometheus/prometheus/config"
	yamlv2 "go.yaml.in/yaml/v2"
)

// Global is the global section: Prometheus's (scrape and evaluation
// intervals, external labels …) and, beside it, Alertmanager's defaults of
// its receivers (smtp_smarthost, opsgenie_api_key, http_config …), as
// alertmanager.yml's global section holds them. resolve_timeout is
// intake.resolve_timeout here.
type Global struct {
	promconfig.GlobalConfig `yaml:",inline"`
	// Alertmanager holds Alertmanager's keys; the integrations of
	// AlertmanagerIntegrations take their defaults from it.
	Alertmanager amconfig.GlobalConfig `yaml:"-"`
}

// DefaultGlobal is the global section's defaults.
func DefaultGlobal() Global {
	return Global{GlobalConfig: promconfig.DefaultGlobalConfig, Alertmanager: amconfig.DefaultGlobalConfig()}
}

// alertmanagerGlobalKeys are the keys of Alertmanager's global section that
// configure receivers.
var alertmanagerGlobalKeys = func() map[string]bool {
	keys := map[string]bool{}
	t := reflect.TypeFor[amconfig.GlobalConfig]()
	for i := range t.NumField() {
		if k, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); k != "" && k != "-" && k != "resolve_timeout" {
			keys[k] = true
		}
	}
	return keys
}()

// splitGlobal splits a global section into Prometheus's keys and
// Alertmanager's.
func splitGlobal(ms yamlv2.MapSlice) (prom, am yamlv2.MapSlice) {
	for _, it := range ms {
		if k, _ := it.Key.(string); alertmanagerGlobalKeys[k] {
			am = append(am, it)
		} else {
			prom = append(prom, it)
		}
	}
	return prom, am
}

// UnmarshalYAML decodes both kinds of keys in one strict pass, so that an
// unknown key or a bad value is reported with its line, then Prometheus's
// keys again through Prometheus's own decoding, for its defaults and checks.
func (g *Global) UnmarshalYAML(unmarshal func(any) error) error {
	type both struct {
		Prometheus   promconfig.GlobalConfig `yaml:",inline"`
		Alertmanager amconfig.GlobalConfig   `yaml:",inline"`
	}
	v := both{Alertmanager: amconfig.DefaultGlobalConfig()}
	if err := unmarshal(&v); err != nil {
		return err
	}
	var ms yamlv2.MapSlice
	if err := unmarshal(&ms); err != nil {
		return err
	}
	prom, _ := splitGlobal(ms)
	for _, it := range ms {
		if it.Key == "resolve_timeout" {
			return errors.New("global: resolve_timeout is intake.resolve_timeout in alertd")
		}
	}
	b, err := yamlv2.Marshal(prom)
	if err != nil {
		return err
	}
	g.GlobalConfig = promconfig.GlobalConfig{}
	if err := yamlv2.Unmarshal(b, &g.GlobalConfig); err != nil {
		return err
	}
	g.Alertmanager = v.Alertmanager
	return nil
}

// AlertmanagerIntegrations are the integrations of Alertmanager's receivers
// that alertd notifies through Alertmanager's own notifiers, in
// Alertmanager's format and with its defaults from the global section.
type AlertmanagerIntegrations struct {
	DiscordConfigs    []*discord.DiscordConfig       `yaml:"discord_configs,omitempty"`
	EmailConfigs      []*email.EmailConfig           `yaml:"email_configs,omitempty"`
	IncidentioConfigs []*incidentio.IncidentioConfig `yaml:"incidentio_configs,omitempty"`
	JiraConfigs       []*jira.JiraConfig             `yaml:"jira_configs,omitempty"`
	MattermostConfigs []*mattermost.MattermostConfig `yaml:"mattermost_configs,omitempty"`
	MSTeamsConfigs    []*msteams.MSTeamsConfig       `yaml:"msteams_configs,omitempty"`
	MSTeamsV2Configs  []*msteamsv2.MSTeamsV2Config   `yaml:"msteamsv2_configs,omitempty"`
	OpsGenieConfigs   []*opsgenie.OpsGenieConfig     `yaml:"opsgenie_configs,omitempty"`
	PushoverConfigs   []*pushover.PushoverConfig     `yaml:"pushover_configs,omitempty"`
	RocketchatConfigs []*rocketchat.RocketchatConfig `yaml:"rocketchat_configs,omitempty"`
	SNSConfigs        []*sns.SNSConfig               `yaml:"sns_configs,omitempty"`
	TelegramConfigs   []*telegram.TelegramConfig     `yaml:"telegram_configs,omitempty"`
	VictorOpsConfigs  []*victorops.VictorOpsConfig   `yaml:"victorops_configs,omitempty"`
	WebexConfigs      []*webex.WebexConfig           `yaml:"webex_configs,omitempty"`
	WechatConfigs     []*wechat.WechatConfig         `yaml:"wechat_configs,omitempty"`
}

// alertmanagerIntegrationKeys are AlertmanagerIntegrations' keys.
var alertmanagerIntegrationKeys = func() map[string]bool {
	keys := map[string]bool{}
	t := reflect.TypeFor[AlertmanagerIntegrations]()
	for i := range t.NumField() {
		k, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		keys[k] = true
	}
	return keys
}()

// Empty reports whether there are none.
func (a *AlertmanagerIntegrations) Empty() bool {
	v := reflect.ValueOf(a).Elem()
	for i := range v.NumField() {
		if v.Field(i).Len() > 0 {
			return false
		}
	}
	return true
}

// Receiver returns them as the receiver name of Alertmanager's
// configuration, for its notifiers (config/receiver).
func (a *AlertmanagerIntegrations) Receiver(name string) amconfig.Receiver {
	r := amconfig.Receiver{Name: name}
	a.pair(&r, func(mine, theirs reflect.Value) { theirs.Set(mine) })
	return r
}

// pair calls f with each of a's fields and r's field of the same name: the
// two types name Alertmanager's integrations alike.
func (a *AlertmanagerIntegrations) pair(r *amconfig.Receiver, f func(mine, theirs reflect.Value)) {
	v, rv := reflect.ValueOf(a).Elem(), reflect.ValueOf(r).Elem()
	for i := range v.NumField() {
		name := v.Type().Field(i).Name
		theirs := rv.FieldByName(name)
		if !theirs.IsValid() {
			panic("alertconfig: Alertmanager's Receiver has no field " + name)
		}
		f(v.Field(i), theirs)
	}
}

// alertmanagerReceivers gives the receivers' Alertmanager integrations
// their defaults from the global section, and checks them, by loading them
// with Alertmanager's config.Load: the receivers' sections of the document
// b that hold any, beside the global section's Alertmanager keys. Files
// they name are relative to dir.
func (c *Config) alertmanagerReceivers(b []byte, dir string) error {
	var doc yamlv2.MapSlice
	if err := yamlv2.Unmarshal(b, &doc); err != nil {
		return err
	}
	var global yamlv2.MapSlice
	var names []string
	var list []any
	for _, it := range doc {
		switch k, _ := it.Key.(string); k {
		case "global":
			if ms, ok := it.Value.(yamlv2.MapSlice); ok {
				_, global = splitGlobal(ms)
			}
		case "receivers":
			rs, _ := it.Value.([]any)
			for _, r := range rs {
				ms, _ := r.(yamlv2.MapSlice)
				var name string
				part := yamlv2.MapSlice{}
				for _, f := range ms {
					switch k, _ := f.Key.(string); {
					case k == "name":
						name, _ = f.Value.(string)
						part = append(part, f)
					case alertmanagerIntegrationKeys[k]:
						part = append(part, f)
					}
				}
				if len(part) > 1 {
					list = append(list, part)
					names = append(names, name)
				}
			}
		}
	}
	if len(names) == 0 {
		return nil
	}
	out, err := yamlv2.Marshal(yamlv2.MapSlice{
		{Key: "global", Value: global},
		{Key: "route", Value: yamlv2.MapSlice{{Key: "receiver", Value: names[0]}}},
		{Key: "receivers", Value: list},
	})
	if err != nil {
		return err
	}
	am, err := amconfig.Load(string(out))
	if err != nil {
		return fmt.Errorf("receivers: %w", err)
	}
	for i := range am.Receivers {
		ar := &am.Receivers[i]
		for _, r := range c.Receivers {
			if r == nil || r.Name != ar.Name {
				continue
			}
			r.AlertmanagerIntegrations.pair(ar, func(mine, theirs reflect.Value) { mine.Set(theirs) })
			if dir != "" {
				// Absolute, as several integrations can share one client
				// configuration (the global http_config): a second pass
				// then changes nothing.
				abs, err := filepath.Abs(dir)
				if err != nil {
					return err
				}
				setDirectories(reflect.ValueOf(&r.AlertmanagerIntegrations).Elem(), abs)
			}
		}
	}
	return nil
}

// directorySetter is a client or TLS configuration whose files are relative
// to a directory.
type directorySetter interface{ SetDirectory(dir string) }

var (
	_ directorySetter = (*commoncfg.HTTPClientConfig)(nil)
	_ directorySetter = (*commoncfg.TLSConfig)(nil)
)

// setDirectories makes the files of the HTTP client and TLS configurations
// in v (Alertmanager's integrations) relative to dir, as Alertmanager's
// LoadFile does.
func setDirectories(v reflect.Value, dir string) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return
		}
		if ds, ok := v.Interface().(directorySetter); ok {
			ds.SetDirectory(dir)
			return
		}
		setDirectories(v.Elem(), dir)
	case reflect.Slice:
		for i := range v.Len() {
			setDirectories(v.Index(i), dir)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				setDirectories(v.Field(i), dir)
			}
		}
	}
}
