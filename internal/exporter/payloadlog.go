package exporter

import (
	"bytes"
	crand "crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/textproto"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promconfig "github.com/prometheus/common/config"

	"github.com/modelmon/modelmon/internal/payload"
	"github.com/modelmon/modelmon/internal/payloadlog"
)

// PayloadLogOptions configure the payload log: captured requests and
// responses sent to an HTTP endpoint as CloudEvents (KServe's logger's).
type PayloadLogOptions struct {
	// URL receives the events; empty: no payload log.
	URL string
	// Mode is which bodies are sent: all, request or response.
	Mode string
	// SampleRatio is the share of the captured predictions logged.
	SampleRatio float64
	// Source is the events' source attribute.
	Source string
	// Extensions are further attributes of every event (name → value).
	Extensions map[string]string
	// TLS configures the connections to an https URL (the
	// --payload-log.* TLS flags); empty: the system's CAs.
	TLS promconfig.TLSConfig
	// MetadataHeaders are request headers whose values go into each
	// event's metadata attribute, as JSON ({"X-User-Id": ["u1"]}), as
	// KServe's logger's metadataHeaders do. Streamed answers' requests
	// have none.
	MetadataHeaders []string
	// Workers, BatchSize, Timeout, MaxQueueBytes, SpoolDir and
	// MaxSpoolBytes are payloadlog.Options'.
	Workers       int
	BatchSize     int
	Timeout       time.Duration
	MaxQueueBytes int64
	SpoolDir      string
	MaxSpoolBytes int64
}

// Payload log modes.
const (
	PayloadLogAll      = "all"
	PayloadLogRequest  = "request"
	PayloadLogResponse = "response"
)

// extensionName is what CloudEvents allows as an attribute name.
var extensionName = regexp.MustCompile(`^[a-z0-9]{1,20}$`)

// reservedAttributes are CloudEvents' own attributes and the ones the
// sidecar sets.
var reservedAttributes = map[string]bool{
	"id": true, "source": true, "specversion": true, "type": true, "datacontenttype": true,
	"dataschema": true, "subject": true, "time": true, "data": true, "modelname": true, "modelversion": true,
	"metadata": true,
}

// check checks the options of the payload log.
func (o PayloadLogOptions) check() error {
	switch o.Mode {
	case PayloadLogAll, PayloadLogRequest, PayloadLogResponse:
	default:
		return fmt.Errorf("invalid payload log mode %q: all, request or response", o.Mode)
	}
	if !(o.SampleRatio > 0 && o.SampleRatio <= 1) {
		return fmt.Errorf("invalid payload log sample ratio %v: it must be in (0, 1]", o.SampleRatio)
	}
	for _, h := range o.MetadataHeaders {
		if h == "" || strings.ContainsAny(h, " :\r\n") {
			return fmt.Errorf("invalid payload log metadata header %q", h)
		}
	}
	for name := range o.Extensions {
		if !extensionName.MatchString(name) {
			return fmt.Errorf("invalid payload log extension %q: CloudEvents attribute names are 1 to 20 lowercase letters and digits", name)
		}
		if reservedAttributes[name] {
			return fmt.Errorf("invalid payload log extension %q: the attribute is the sidecar's own", name)
		}
	}
	return nil
}

// payloadLog turns captures into the payload log's events.
type payloadLog struct {
	l         *payloadlog.Logger
	opts      PayloadLogOptions
	requests  bool
	responses bool
	idPrefix  string
	seq       atomic.Uint64
	now       func() time.Time
	// headers are MetadataHeaders in canonical form, by lower-case name.
	headers map[string]string
}

func newPayloadLog(o PayloadLogOptions, reg prometheus.Registerer, now func() time.Time, logger *slog.Logger) (*payloadLog, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("invalid --payload-log.url %q: an http:// or https:// URL with a host", o.URL)
	}
	var tlsConfig *tls.Config
	if u.Scheme == "https" {
		if tlsConfig, err = upstreamTLS(o.TLS, "--payload-log.", "--payload-log.url", o.URL, u.Hostname(), logger); err != nil {
			return nil, err
		}
	}
	l, err := payloadlog.New(payloadlog.Options{
		URL: o.URL, Workers: o.Workers, BatchSize: o.BatchSize, Timeout: o.Timeout, MaxQueueBytes: o.MaxQueueBytes,
		SpoolDir: o.SpoolDir, MaxSpoolBytes: o.MaxSpoolBytes, TLSConfig: tlsConfig, Registerer: reg, Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	var prefix [6]byte
	_, _ = crand.Read(prefix[:])
	pl := &payloadLog{
		l: l, opts: o, now: now, idPrefix: hex.EncodeToString(prefix[:]),
		requests:  o.Mode != PayloadLogResponse,
		responses: o.Mode != PayloadLogRequest,
	}
	if len(o.MetadataHeaders) > 0 {
		pl.headers = map[string]string{}
		for _, h := range o.MetadataHeaders {
			pl.headers[strings.ToLower(h)] = textproto.CanonicalMIMEHeaderKey(h)
		}
	}
	return pl, nil
}

// log offers a capture's bodies (decoded) as events, when sampled. A
// capture without a prediction id gets one; the request and its response
// share it. A failed prediction's capture (captureFailed) has a request
// alone: as KServe's logger does, only a prediction answered logs a
// response.
func (p *payloadLog) log(c *capture, f payload.Format, req, resp []byte) {
	if p.opts.SampleRatio < 1 && rand.Float64() >= p.opts.SampleRatio {
		return
	}
	id := string(c.id())
	if id == "" {
		id = p.idPrefix + "-" + strconv.FormatUint(p.seq.Add(1), 36)
	}
	ext := make(map[string]string, len(p.opts.Extensions)+2)
	for k, v := range p.opts.Extensions {
		ext[k] = v
	}
	ext["modelname"] = c.model.name
	if p.headers != nil && !c.format.GRPC() { // a gRPC call's is for the shadow
		if hdr := c.header(); hdr != nil {
			ext["metadata"] = p.metadata(hdr)
		}
	}
	if v := c.model.version.Load(); v != nil && *v != "" {
		ext["modelversion"] = *v
	}
	now := p.now()
	if p.requests {
		p.l.Offer(&payloadlog.Event{ID: id, Type: payloadlog.TypeRequest, Source: p.opts.Source, Time: now,
			ContentType: contentType(f, req), Extensions: ext, Data: bytes.Clone(req)})
	}
	if p.responses && c.kind != captureFailed {
		p.l.Offer(&payloadlog.Event{ID: id, Type: payloadlog.TypeResponse, Source: p.opts.Source, Time: now,
			ContentType: contentType(f, resp), Extensions: ext, Data: bytes.Clone(resp)})
	}
}

// metadata picks the MetadataHeaders' values from a request's header (as
// sent: the request line, then "Name: value" lines) and gives them as JSON.
func (p *payloadLog) metadata(hdr []byte) string {
	m := map[string][]string{}
	for i, line := range bytes.Split(hdr, []byte("\n")) {
		name, value, ok := bytes.Cut(bytes.TrimRight(line, "\r"), []byte(":"))
		if i == 0 || !ok {
			continue
		}
		if canon, ok := p.headers[strings.ToLower(string(bytes.TrimSpace(name)))]; ok {
			m[canon] = append(m[canon], string(bytes.TrimSpace(value)))
		}
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// contentType is the media type of a captured body: a gRPC call's message
// is protobuf; else JSON, a server-sent event stream, or bytes.
func contentType(f payload.Format, body []byte) string {
	if f.GRPC() {
		return "application/protobuf"
	}
	b := bytes.TrimLeft(body, " \t\r\n")
	switch {
	case len(b) > 0 && (b[0] == '{' || b[0] == '['):
		return "application/json"
	case bytes.HasPrefix(b, []byte("data:")) || bytes.HasPrefix(b, []byte("event:")):
		return "text/event-stream"
	}
	return "application/octet-stream"
}
