# Forge: the two commands a new machine needs are `make demo` and `make test`.
SWIFT ?= swift
APT_PACKAGES := libopenblas-dev libpng-dev libsndfile1-dev libjpeg62-turbo-dev zlib1g-dev pkg-config
# Only `make test` needs MPI: mpirun and the libmpi.so.40 it brings (libopenmpi3), which forge loads
# at run time for data-parallel training. Nothing links libmpi, so its headers (libopenmpi-dev) are
# not needed, and `make build` / `make demo` install no MPI.
TEST_APT_PACKAGES := openmpi-bin tmux
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# OpenBLAS kernels: Debian's OpenBLAS 0.3.21 falls back to slow generic kernels on CPUs it does not
# know. The forge binary fixes that itself by re-executing (see TensorCore/BLAS.swift); the test
# runner gets the same choice here. A value the user (or the machine) already set is kept.
BLAS_CORE := $(shell scripts/blas-core.sh)
ifneq ($(BLAS_CORE),)
export OPENBLAS_CORETYPE := $(BLAS_CORE)
endif

.PHONY: deps test-deps build test demo bench fuzz fuzz-build clean

## deps: install the Debian packages Forge links against (once; nothing when all are present)
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	fi

## build: release build of the forge CLI and libraries
build: deps
	$(SWIFT) build -c release

## test-deps: deps, plus Open MPI's mpirun for the data-parallel tests (Tests/CLITests/DataParallelCLITests.swift) and tmux for the terminal tests (TerminalCLITests.swift)
test-deps: deps
	@dpkg -s $(TEST_APT_PACKAGES) >/dev/null 2>&1 || { echo "installing: $(TEST_APT_PACKAGES)"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $(TEST_APT_PACKAGES); }

## test: the whole test suite, in release mode (kernels are measured and tested as users run them).
## The TensorBoard tests read Forge's event files with the real tensorboard package, in a throw-away
## venv under /tmp that they make with pip (about 40 s once; skipped with the reason when pip cannot).
test: test-deps
	FORGE_TENSORBOARD_INSTALL=1 $(SWIFT) test -c release

## demo: install, build, and run the main job on built-in defaults
demo: build
	scripts/demo.sh

## bench: Forge against the PyTorch reference scripts, side by side
bench: build
	scripts/bench.sh

## fuzz-build: the libFuzzer harnesses of Fuzz/ (swiftc -sanitize=fuzzer,address) in .build-fuzz/
fuzz-build: deps
	Fuzz/build.sh

## fuzz: build the harnesses, then fuzz every decoder of untrusted bytes (PNG, JPEG, WAV, IDX,
## safetensors, JSON) for FUZZ_SECONDS each (default 30), one after another; fails on any crash.
## `Fuzz/run.sh -merge TARGET -- -runs=1000000` runs longer and folds new coverage into Fuzz/corpus.
fuzz: fuzz-build
	Fuzz/run.sh

clean:
	rm -rf .build .build-fuzz
