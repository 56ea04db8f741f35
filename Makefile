# keyauthz developer tasks. `make help` lists them.
SHELL := /bin/bash
GO ?= go

.PHONY: help run build test test-go test-rego vet fuzz bench bundle cluster
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

run: ## run the service on its embedded defaults (./data, built-in policy, 127.0.0.1:8080)
	$(GO) run ./cmd/keyauthz serve

build: ## build the keyauthz binary into ./keyauthz
	$(GO) build -o keyauthz ./cmd/keyauthz

test: vet test-go test-rego ## everything CI runs: vet, staticcheck, Go tests (race on), opa check and opa test

vet: ## go vet, gofmt and staticcheck (pinned in go.mod as a tool)
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) tool staticcheck ./...

test-go: ## go test with the race detector (every package of ours runs goroutines or tests them)
	$(GO) test -race -count=1 ./...

test-rego: ## opa check --strict and opa test on the policy
	$(GO) tool opa check --strict policies/ policy_test/
	$(GO) tool opa test -v --timeout 60s policies/ policy_test/

fuzz: ## run each fuzz target for 30s
	$(GO) test -run XXX -fuzz FuzzNormalizePath -fuzztime 30s ./internal/opa/
	$(GO) test -run XXX -fuzz FuzzAmbiguous -fuzztime 30s ./internal/opa/
	$(GO) test -run XXX -fuzz FuzzParseKey -fuzztime 30s ./internal/keys/
	$(GO) test -run XXX -fuzz FuzzDataDecision -fuzztime 30s ./internal/server/
	$(GO) test -run XXX -fuzz FuzzForwardAuth -fuzztime 30s ./internal/server/

bundle: ## build the policy bundle ./keyauthz.tar.gz (revision: a content hash)
	$(GO) run ./cmd/keyauthz bundle build -o keyauthz.tar.gz

bench: ## benchmarks with allocations
	$(GO) test -run XXX -bench . -benchmem ./...

cluster: ## the cluster test's long form: three etcd members, three nodes, 2000 changes (docs/cluster.md#measured)
	KEYAUTHZ_CLUSTER_CHANGES=2000 $(GO) test -count=1 -v -timeout 30m -run TestCluster ./test/cluster/
