package exporter

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"
)

// writeCert writes a certificate for 127.0.0.1 and its key, and returns a
// pool that trusts it.
func writeCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	ca := newTestCA(t, dir)
	certFile, keyFile = ca.issue(t, dir, "server", x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")})
	return certFile, keyFile, ca.pool
}

// testCA is a private certificate authority that issues the tests'
// certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // its certificate, PEM
	pool *x509.CertPool
}

func newTestCA(t *testing.T, dir string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "modelmon test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	ca := &testCA{key: key, file: filepath.Join(dir, "ca.pem"), pool: x509.NewCertPool()}
	ca.cert, err = x509.ParseCertificate(der)
	require.NoError(t, err)
	ca.pool.AddCert(ca.cert)
	require.NoError(t, os.WriteFile(ca.file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	return ca
}

// issue writes a certificate for name (its common name, and its DNS name
// when it looks like one) and ips, signed by ca, and its key.
func (ca *testCA) issue(t *testing.T, dir, name string, usage x509.ExtKeyUsage, ips []net.IP) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  ips,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	if strings.Contains(name, ".") {
		tmpl.DNSNames = []string{name}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	kb, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600))
	return certFile, keyFile
}

// The exporter-toolkit web configuration puts TLS and basic auth in front of
// /metrics and the push API.
func TestWebConfigTLSAndBasicAuth(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := writeCert(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	require.NoError(t, err)
	webCfg := filepath.Join(dir, "web.yml")
	require.NoError(t, os.WriteFile(webCfg, []byte("tls_server_config:\n  cert_file: "+certFile+"\n  key_file: "+keyFile+
		"\nbasic_auth_users:\n  prometheus: "+string(hash)+"\n"), 0o600))

	up := modelServer(t)
	e := startExporter(t, up.URL, func(o *Options) { *o.Web.WebConfigFile = webCfg })
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer client.CloseIdleConnections()
	base := "https://" + e.WebAddr()

	for _, tc := range []struct {
		method, path, body string
		user, pass         string
		status             int
	}{
		{"GET", "/metrics", "", "", "", http.StatusUnauthorized},
		{"GET", "/metrics", "", "prometheus", "wrong", http.StatusUnauthorized},
		{"GET", "/metrics", "", "prometheus", "s3cret", http.StatusOK},
		{"POST", "/v1/observations", `[{"model":"a"}]`, "", "", http.StatusUnauthorized},
		{"POST", "/v1/observations", `[{"model":"a"}]`, "prometheus", "s3cret", http.StatusOK},
	} {
		req, err := http.NewRequest(tc.method, base+tc.path, strings.NewReader(tc.body))
		require.NoError(t, err)
		if tc.user != "" {
			req.SetBasicAuth(tc.user, tc.pass)
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, tc.status, resp.StatusCode, "%s %s as %q", tc.method, tc.path, tc.user)
	}
	// Plain HTTP is refused on a TLS listener.
	resp, err := http.Get("http://" + e.WebAddr() + "/metrics")
	if err == nil {
		resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	}
}

// SIGHUP reloads the configuration, like POST /-/reload.
func TestReloadOnSIGHUP(t *testing.T) {
	up := modelServer(t)
	cfg := filepath.Join(t.TempDir(), "modelmon.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("default_model: before\n"), 0o644))
	e := startExporter(t, up.URL, func(o *Options) { o.ConfigFile = cfg })
	require.NoError(t, os.WriteFile(cfg, []byte("default_model: after\n"), 0o644))
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	require.Eventually(t, func() bool {
		return string(e.cfg.Load().defaultModel) == "after"
	}, 10*time.Second, 5*time.Millisecond)
	do(t, "POST", "http://"+e.ProxyAddr()+"/score", `{"a":1}`)
	require.Equal(t, 1.0, metricValue(t, e, "modelmon_requests_total", map[string]string{"model": "after"}))
}

// mtlsServer starts an https server on loopback with a certificate of ca
// for name, that requires a client certificate of ca; it returns the
// server and the files of a client certificate ("sidecar") and its key.
func mtlsServer(t *testing.T, dir string, ca *testCA, name string, h http.Handler) (srv *httptest.Server, cliCert, cliKey string) {
	t.Helper()
	srvCert, srvKey := ca.issue(t, dir, name, x509.ExtKeyUsageServerAuth, nil)
	cliCert, cliKey = ca.issue(t, dir, "sidecar", x509.ExtKeyUsageClientAuth, nil)
	pair, err := tls.LoadX509KeyPair(srvCert, srvKey)
	require.NoError(t, err)
	srv = httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.pool}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, cliCert, cliKey
}
