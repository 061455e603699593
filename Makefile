# infonce: build, image and tests.
#
#   make              list the targets
#   make build        the static binary at ./bin/infonce
#   make image        the container image $(IMAGE) (FROM scratch, nothing pulled)
#   make test         go test -race ./... (what CI runs)
#   make test-deploy  the compose, Slurm, Kubernetes and ssh launcher tests
#   make up / down    docker-compose up / down with $(WORKERS) workers

GO        ?= go
IMAGE     ?= infonce:latest
WORKERS   ?= 4
COMPOSE   ?= $(shell if docker compose version >/dev/null 2>&1; then echo "docker compose"; else echo docker-compose; fi)
CONTEXT   := bin/image

.PHONY: help build image test test-deploy up down clean

help:
	@echo "targets:"
	@echo "  build        static binary bin/infonce (CGO_ENABLED=0)"
	@echo "  image        container image $(IMAGE), FROM scratch, built from the host binary"
	@echo "  test         go test -race ./..."
	@echo "  test-deploy  compose, Slurm, Kubernetes and ssh launcher tests (package deploy)"
	@echo "  up           $(COMPOSE) up --scale worker=$(WORKERS)"
	@echo "  down         $(COMPOSE) down (the run volume is kept; add -v to drop it)"
	@echo "  clean        remove bin/ (binary and image context)"

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/infonce ./cmd/infonce

# The build context is a directory with the binary and two empty
# directories, so `docker build` of the scratch image sends a few MB and
# pulls nothing.
image:
	rm -rf $(CONTEXT)
	mkdir -p $(CONTEXT)/tmp $(CONTEXT)/run
	chmod 1777 $(CONTEXT)/tmp
	CGO_ENABLED=0 $(GO) build -trimpath -o $(CONTEXT)/infonce ./cmd/infonce
	cp Dockerfile $(CONTEXT)/Dockerfile
	docker build -t $(IMAGE) $(CONTEXT)

test:
	$(GO) test -race ./...

test-deploy:
	$(GO) test -v -count=1 -timeout 15m ./deploy/...

up:
	$(COMPOSE) up --scale worker=$(WORKERS)

down:
	$(COMPOSE) down

clean:
	rm -rf bin
