// Package notifytest holds what tests of notifications share: the webhook
// payload (version 4) as a receiver decodes it.
package notifytest

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// Payload is Alertmanager's webhook payload, version 4, as a receiver
// decodes it: plain maps and times, so tests compare it with require.Equal.
type Payload struct {
	Version            string            `json:"version"`
	GroupKey           string            `json:"groupKey"`
	TruncatedAlerts    uint64            `json:"truncatedAlerts"`
	Status             string            `json:"status"`
	Receiver           string            `json:"receiver"`
	NotificationReason string            `json:"notification_reason"`
	GroupLabels        map[string]string `json:"groupLabels"`
	CommonLabels       map[string]string `json:"commonLabels"`
	CommonAnnotations  map[string]string `json:"commonAnnotations"`
	RouteLabels        map[string]string `json:"routeLabels"`
	ExternalURL        string            `json:"externalURL"`
	Alerts             []PayloadAlert    `json:"alerts"`
}

// PayloadAlert is one alert of a Payload.
type PayloadAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// UTC returns p with its times in UTC, so that require.Equal compares them
// by instant.
func (p Payload) UTC() Payload {
	p.Alerts = slices.Clone(p.Alerts)
	for i := range p.Alerts {
		p.Alerts[i].StartsAt = p.Alerts[i].StartsAt.UTC()
		p.Alerts[i].EndsAt = p.Alerts[i].EndsAt.UTC()
	}
	return p
}

// String summarises p as "receiver {group labels} alertname:status …",
// alerts sorted.
func (p Payload) String() string {
	alerts := make([]string, 0, len(p.Alerts))
	for _, a := range p.Alerts {
		alerts = append(alerts, a.Labels["alertname"]+":"+a.Status)
	}
	slices.Sort(alerts)
	ls := make(model.LabelSet, len(p.GroupLabels))
	for k, v := range p.GroupLabels {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return fmt.Sprintf("%s %s %s", p.Receiver, ls, strings.Join(alerts, " "))
}
