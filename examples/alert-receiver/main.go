// Command alert-receiver is the demo's notification endpoint: it accepts
// Alertmanager webhook payloads (version 4), as alertd and Alertmanager send
// them, and prints one line per alert.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"
)

type payload struct {
	Version  string `json:"version"`
	Receiver string `json:"receiver"`
	Status   string `json:"status"`
	Alerts   []struct {
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		StartsAt    time.Time         `json:"startsAt"`
	} `json:"alerts"`
}

func main() {
	addr := flag.String("listen-address", "127.0.0.1:9110", "Address to receive webhooks on.")
	flag.Parse()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST a webhook payload", http.StatusMethodNotAllowed)
			return
		}
		b, err := io.ReadAll(io.LimitReader(r.Body, 10<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var p payload
		if err := json.Unmarshal(b, &p); err != nil {
			http.Error(w, "invalid payload: "+err.Error(), http.StatusBadRequest)
			return
		}
		for _, a := range p.Alerts {
			fmt.Fprintf(os.Stdout, "%s %-8s %s %s — %s\n", time.Now().Format(time.TimeOnly), strings.ToUpper(a.Status), p.Receiver, labels(a.Labels), a.Annotations["summary"])
		}
	})
	log.Fatal(http.ListenAndServe(*addr, nil))
}

func labels(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+m[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}
