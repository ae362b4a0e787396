// Command bareproxy is the smallest reverse proxy fasthttp makes: no metrics,
// no capture, no header handling. make bench-proxy measures it as the floor
// the sidecar's proxy path is built on. With --raw-syscalls its connections
// make their reads and writes as the sidecar's do by default (package rawio).
package main

import (
	"flag"
	"log"
	"net"
	"time"

	"github.com/modelmon/modelmon/internal/rawio"
	"github.com/valyala/fasthttp"
)

// rawListener hands out its connections wrapped by rawio.
type rawListener struct{ net.Listener }

func (l rawListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return rawio.Wrap(c), nil
}

func main() {
	listen := flag.String("listen-address", "127.0.0.1:18083", "Address to accept requests on.")
	upstream := flag.String("upstream", "127.0.0.1:18080", "host:port of the model server.")
	raw := flag.Bool("raw-syscalls", false, "Make the connections' reads and writes raw system calls (Linux).")
	flag.Parse()
	client := &fasthttp.HostClient{Addr: *upstream}
	server := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if err := client.Do(&ctx.Request, &ctx.Response); err != nil {
			ctx.Error("bareproxy: "+err.Error(), fasthttp.StatusBadGateway)
		}
	}}
	ln, err := net.Listen("tcp4", *listen)
	if err != nil {
		log.Fatal(err)
	}
	if *raw {
		client.DialTimeout = func(addr string, timeout time.Duration) (net.Conn, error) {
			c, err := net.DialTimeout("tcp4", addr, timeout)
			if err != nil {
				return nil, err
			}
			return rawio.Wrap(c), nil
		}
		ln = rawListener{ln}
	}
	log.Fatal(server.Serve(ln))
}
