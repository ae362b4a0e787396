// Command bareproxy is the smallest reverse proxy fasthttp makes: no metrics,
// no capture, no header handling. make bench-proxy measures it as the floor
// the sidecar's proxy path is built on.
package main

import (
	"flag"
	"log"

	"github.com/valyala/fasthttp"
)

func main() {
	listen := flag.String("listen-address", "127.0.0.1:18083", "Address to accept requests on.")
	upstream := flag.String("upstream", "127.0.0.1:18080", "host:port of the model server.")
	flag.Parse()
	client := &fasthttp.HostClient{Addr: *upstream}
	server := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if err := client.Do(&ctx.Request, &ctx.Response); err != nil {
			ctx.Error("bareproxy: "+err.Error(), fasthttp.StatusBadGateway)
		}
	}}
	log.Fatal(server.ListenAndServe(*listen))
}
