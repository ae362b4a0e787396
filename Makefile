# modelmon — build, test and run. Targets keep the names of Prometheus's
# Makefile.common (build, test, lint, checkmetrics) plus run, dashboards and bench-proxy.

GO          ?= go
GOPATH      := $(shell $(GO) env GOPATH)
STATICCHECK ?= $(GOPATH)/bin/staticcheck
STATICCHECK_VERSION ?= v0.8.2
# An execution count, not a duration: with a duration, Go 1.26's fuzz
# coordinator can report "context deadline exceeded" as a failure when the
# time runs out mid-execution (go.dev/issue/75804, fixed in Go 1.27).
FUZZTIME    ?= 30000x
PKG         := github.com/modelmon/modelmon
VERSION     ?= $(shell cat VERSION 2>/dev/null || echo 0.1.0)
REVISION    ?= $(shell git rev-parse HEAD 2>/dev/null)
BRANCH      ?= $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null)
LDFLAGS     := -X github.com/prometheus/common/version.Version=$(VERSION) \
               -X github.com/prometheus/common/version.Revision=$(REVISION) \
               -X github.com/prometheus/common/version.Branch=$(BRANCH) \
               -X github.com/prometheus/common/version.BuildUser=$(USER)@$(shell hostname) \
               -X github.com/prometheus/common/version.BuildDate=$(shell date -u +%Y%m%d-%H:%M:%S)

# Fuzz targets run briefly by `make test`, as package:target.
FUZZ_TARGETS := \
	./internal/payload:FuzzKServeV1 \
	./internal/payload:FuzzOIP \
	./internal/payload:FuzzMLflow \
	./internal/payload:FuzzJSON \
	./internal/payload:FuzzSeldon \
	./internal/payload:FuzzSeldonFeedback \
	./internal/payload:FuzzSeldonGRPC \
	./internal/payload:FuzzTorchServeGRPC \
	./internal/payload:FuzzKServeFastPath \
	./internal/payload:FuzzOIPFastPath \
	./internal/payload:FuzzOIPGRPC \
	./internal/payload:FuzzTFServingGRPC \
	./internal/payload:FuzzTFServingExamples \
	./internal/exporter:FuzzStreamSplice \
	./internal/config:FuzzLoad \
	./drift:FuzzCSV \
	./drift:FuzzJSONL \
	./drift:FuzzProfile \
	./internal/parquetdata:FuzzParquet \
	./drift:FuzzWindowState \
	./internal/quality:FuzzRestore

.PHONY: all build run dashboards kubernetes test test-unit test-e2e fuzz benchcheck checkmetrics checkrules lint vet fmt staticcheck bench bench-proxy bench-rules bench-nab bench-nab-replay clean

all: lint build test

build:
	@mkdir -p bin
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/exporter ./cmd/exporter
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/alertd ./cmd/alertd
	$(GO) build -o bin/model-server ./examples/model-server
	$(GO) build -o bin/traffic ./examples/traffic
	$(GO) build -o bin/alert-receiver ./examples/alert-receiver

## run: the demo — model server, sidecar, traffic whose amount shifts at 60s, alertd, and a receiver standing in for Slack and CI:
## drift alert, classification, retrain webhook, escalation to a second level, in about 2½ minutes (EXIT_WHEN_DONE=1 stops then).
run: build
	@bash scripts/run.sh

## dashboards: regenerate the Grafana dashboards (dashboards/json/*.json) from their builders in dashboards/.
dashboards:
	$(GO) run ./dashboards/cmd/generate -out dashboards/json

## kubernetes: regenerate deploy/kubernetes/prometheusrule.yaml from rules/*.rules.yml and deploy/prometheus/*.rules.yml.
kubernetes:
	$(GO) run ./deploy/kubernetes/cmd/genrules -root . -out deploy/kubernetes/prometheusrule.yaml

## test: every test (with the race detector), a short fuzz of each parser, every Go benchmark once, and promtool on the golden expositions.
test: test-unit fuzz benchcheck checkmetrics checkrules

test-unit:
	$(GO) test -race -count=1 -timeout 20m ./...
	@# -race makes rawio's calls through package syscall (sys_linux_race.go): its raw ones are tested here.
	$(GO) test -count=1 ./internal/rawio/

## test-e2e: the story of `make run` on short intervals, with real processes, alone and with a real Prometheus and Alertmanager (about a minute and a half).
test-e2e:
	$(GO) test -count=1 -run '^TestDriftStory' -v ./e2e/

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name ($(FUZZTIME))"; \
		$(GO) test -run='^$$' -fuzz="^$$name\$$" -fuzztime=$(FUZZTIME) $$pkg; \
	done

## benchcheck: every Go benchmark for one iteration, so that a benchmark its code has broken fails the tests instead of
## waiting for the next `make bench`. -short: a benchmark that runs at several sizes (BenchmarkBatchSettle) runs its smallest.
benchcheck:
	$(GO) test -short -run='^$$' -bench=. -benchtime=1x ./...

checkmetrics:
	@bash scripts/checkmetrics.sh

## checkrules: promtool check rules on the shipped rule files and on the alerts of `exporter alerts`, promtool test rules on rules/*.test.yml and on the golden rules of `exporter rules`, and a category, runbook_url and docs/runbooks.md section for every alert.
checkrules:
	@GO=$(GO) bash scripts/checkrules.sh

lint: vet fmt staticcheck

vet:
	$(GO) vet ./...

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

staticcheck:
	@test -x $(STATICCHECK) || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(STATICCHECK) ./...

## bench: Go benchmarks of the hot paths.
bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./...

## bench-proxy: direct vs sidecar vs nginx under wrk (see BENCHMARKS.md).
bench-proxy:
	@bash scripts/bench-proxy.sh

## bench-rules: 1,000 alerting rules over 10,000 series, alertd vs Prometheus's rule manager (see BENCHMARKS.md).
bench-rules:
	@bash scripts/bench-rules.sh

## bench-nab: every anomaly algorithm on the NAB series in NAB_DIR (default ../shared/bench/nab), scored by NAB's rules (see BENCHMARKS.md).
bench-nab:
	@bash scripts/bench-nab.sh

## bench-nab-replay: the NAB series replayed through a static-threshold rule and through alertd's pipeline, pages scored against NAB's windows (see BENCHMARKS.md).
NAB_DIR ?= ../shared/bench/nab
bench-nab-replay:
	$(GO) build -o bin/alertd ./cmd/alertd && $(GO) run ./scripts/bench/nabreplay -alertd bin/alertd -data $(NAB_DIR)/data -labels $(NAB_DIR)/labels/combined_windows.json $(NAB_REPLAY_FLAGS)

clean:
	rm -rf bin
