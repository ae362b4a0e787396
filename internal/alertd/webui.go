package alertd

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// webFS holds alertd's own web page: the incidents page and its script and
// style sheet. They are plain files with no build step, so what is in
// web/ is what browsers get.
//
//go:embed web
var webFS embed.FS

// webCSP keeps the page to its own script, style sheet and API: no inline
// code, nothing from elsewhere.
const webCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// registerWebUI serves the incidents page at /incidents and its assets
// under /static/. The page fetches the JSON API and posts to it with
// relative URLs, so it works under --web.route-prefix unchanged.
func registerWebUI(mux *http.ServeMux) {
	static, err := fs.Sub(webFS, "web")
	if err != nil {
		panic(err) // only if the embedded directory is missing
	}
	page, err := fs.ReadFile(static, "incidents.html")
	if err != nil {
		panic(err) // likewise
	}
	mux.HandleFunc("GET /incidents", func(w http.ResponseWriter, _ *http.Request) {
		webHeaders(w)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(page)
	})
	files := http.StripPrefix("/static/", http.FileServerFS(static))
	mux.HandleFunc("GET /static/", func(w http.ResponseWriter, r *http.Request) {
		// No directory listings: the assets are linked from the page.
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		webHeaders(w)
		files.ServeHTTP(w, r)
	})
}

// webHeaders sets the security headers of the page and its assets.
func webHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Security-Policy", webCSP)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "same-origin")
}
