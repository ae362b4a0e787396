package exporter

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"os"
	"sync"
)

// upstreamCA verifies the model server's certificate against the CA file
// (--proxy.upstream-ca-file), read again for each new connection, so that a
// rotated CA (a mounted Secret or trust bundle that Kubernetes updates in
// place) is trusted without a restart, as the client certificate is. Go's
// tls.Config reads RootCAs once; a client has no hook to swap them, so the
// standard check (the chain to the roots, the server's name, its use for
// server authentication) runs here, in VerifyConnection, with the
// handshake's own verification turned off (crypto/tls's documented way to
// replace it).
//
// A file that can't be read or holds no certificate (a rotation caught half
// way) leaves the last good CAs in use, with a warning.
type upstreamCA struct {
	file   string
	name   string // the name the model server's certificate must carry
	logger *slog.Logger

	mu   sync.Mutex
	pem  []byte // the file's contents the pool was made of
	pool *x509.CertPool
	bad  string // the last problem logged, so that it is logged once
}

// newUpstreamCA reads file, which must hold a certificate, and sets cfg to
// verify with it that the model server's certificate is one for name (a
// host name or an IP address, as crypto/tls checks config.ServerName).
func newUpstreamCA(file, name string, cfg *tls.Config, logger *slog.Logger) (*upstreamCA, error) {
	ca := &upstreamCA{file: file, name: name, logger: logger}
	if err := ca.load(); err != nil {
		return nil, err
	}
	cfg.RootCAs = nil
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = ca.verify
	return ca, nil
}

var errNoCertificates = errors.New("no PEM certificate in it")

// load reads the file again, and replaces the pool when it changed.
func (ca *upstreamCA) load() error {
	b, err := os.ReadFile(ca.file)
	if err != nil {
		return err
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if ca.pool != nil && bytes.Equal(b, ca.pem) {
		return nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return errNoCertificates
	}
	if ca.pool != nil {
		ca.logger.Info("Read new CA certificates for the model server", "file", ca.file)
	}
	ca.pem, ca.pool, ca.bad = b, pool, ""
	return nil
}

// roots returns the CAs to verify a new connection with.
func (ca *upstreamCA) roots() *x509.CertPool {
	err := ca.load()
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if err != nil && err.Error() != ca.bad {
		ca.bad = err.Error()
		ca.logger.Warn("Couldn't read the model server's CA certificates again: the previous ones stay in use", "file", ca.file, "err", err)
	}
	return ca.pool
}

func (ca *upstreamCA) verify(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: the model server sent no certificate")
	}
	opts := x509.VerifyOptions{DNSName: ca.name, Roots: ca.roots(), Intermediates: x509.NewCertPool()}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
		return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
	}
	return nil
}
