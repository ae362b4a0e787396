// Package web serves what both modelmon binaries share on their web listener:
// the landing page, /-/healthy, /-/ready and /-/reload.
package web

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"

	"github.com/prometheus/exporter-toolkit/web"
)

// Options configure the shared endpoints.
type Options struct {
	// Name and Description head the landing page.
	Name, Description, Version string
	// Links are listed on the landing page, path → text.
	Links []web.LandingLinks
	// RoutePrefix is the path the mux is served under, with the prefix
	// stripped before it (e.g. "/alertd"); the landing page's links carry it.
	RoutePrefix string
	// Ready reports whether the process is ready to serve; nil means always.
	Ready func() bool
	// Reload reloads the configuration and returns the outcome; nil disables
	// POST /-/reload.
	Reload func() error
}

// Register adds the landing page and the lifecycle endpoints to mux.
func Register(mux *http.ServeMux, o Options) error {
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
		fmt.Fprintf(w, "%s is Healthy.\n", o.Name)
	})
	mux.HandleFunc("/-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if o.Ready != nil && !o.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "%s is not ready.\n", o.Name)
			return
		}
		w.WriteHeader(http.StatusOK)
		fmt.Fprintf(w, "%s is Ready.\n", o.Name)
	})
	mux.HandleFunc("/-/reload", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost && r.Method != http.MethodPut {
			w.Header().Set("Allow", "POST, PUT")
			http.Error(w, "This endpoint requires a POST or PUT request.", http.StatusMethodNotAllowed)
			return
		}
		if o.Reload == nil {
			http.Error(w, "Reloading is not enabled.", http.StatusNotFound)
			return
		}
		if err := o.Reload(); err != nil {
			http.Error(w, fmt.Sprintf("failed to reload config: %s", err), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "Reloaded.")
	})
	prefix := strings.TrimRight(o.RoutePrefix, "/")
	landing, err := web.NewLandingPage(web.LandingConfig{
		Name:        o.Name,
		Description: o.Description,
		Version:     o.Version,
		Links:       slices.Clone(o.Links), // it trims their leading slashes
		RoutePrefix: prefix + "/",
	})
	if err != nil {
		return fmt.Errorf("couldn't create landing page: %w", err)
	}
	// The landing page answers only at its route prefix, which the mux no
	// longer sees: put it back.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		r2 := new(http.Request)
		*r2 = *r
		u := *r.URL
		u.Path = prefix + r.URL.Path
		r2.URL = &u
		landing.ServeHTTP(w, r2)
	})
	return nil
}

// Listen opens the listeners of --web.listen-address. With
// --web.systemd-socket it opens none: Serve then takes systemd's socket.
func Listen(fc *web.FlagConfig) ([]net.Listener, error) {
	if fc.WebSystemdSocket != nil && *fc.WebSystemdSocket {
		return nil, nil
	}
	var lns []net.Listener
	for _, addr := range *fc.WebListenAddresses {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("couldn't listen on --web.listen-address=%q: %w", addr, err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// Serve serves srv on the listeners from Listen, with the TLS and basic
// auth of --web.config.file, until srv is shut down. A failure other than
// the shutdown is logged.
func Serve(srv *http.Server, lns []net.Listener, fc *web.FlagConfig, logger *slog.Logger) {
	var err error
	if fc.WebSystemdSocket != nil && *fc.WebSystemdSocket {
		err = web.ListenAndServe(srv, fc, logger)
	} else {
		err = web.ServeMultiple(lns, srv, fc, logger)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Error("Web server stopped", "err", err)
	}
}

// DefaultFlags returns the web flags of a process listening on addr with
// no web configuration file, for callers that set no flags (tests, embedding).
func DefaultFlags(addr string) *web.FlagConfig {
	addrs := []string{addr}
	cfgFile := ""
	return &web.FlagConfig{WebListenAddresses: &addrs, WebConfigFile: &cfgFile}
}
