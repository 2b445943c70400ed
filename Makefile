# Atrium: the front door. Every target installs what it needs first (Debian packages with apt, Python
# packages with pip), so a fresh Debian machine needs only `make run` and `make test`.
#
#   make run            build and start the whole mesh on this machine (`atrium up`, data in ./var)
#   make up             the same, without the build step
#   make test           build, run every test (unit, integration, compose-check); what CI runs
#   make bench          release build, then the benchmarks in bench/ (prints figures; minutes, not CI)
#   make fuzz           the DICOM parser under libFuzzer + ASan for FUZZ_SECONDS (default 600)
#   make proto          regenerate Sources/AtriumAPI/Generated from proto/
#   make proto-check    regenerate into a scratch folder and fail on any difference from the committed code
#   make compose-check  validate compose/compose.yaml against the compose-spec JSON schema
#   make lint           proto-check + compose-check + a warnings-as-errors build

SWIFT          ?= swift
PYTHON         ?= python3
CONFIGURATION  ?= debug
BUILD_FLAGS    ?=
BIN            ?= .build/$(CONFIGURATION)/atrium
PLUGINS        ?= .build-plugins/release
GENERATED      ?= Sources/AtriumAPI/Generated
PROTOS         := $(sort $(wildcard proto/atrium/v1/*.proto)) proto/grpc/health/v1/health.proto
APT_PACKAGES   ?= libsqlite3-dev protobuf-compiler zlib1g-dev libcharls-dev dcmtk curl
PIP_PACKAGES   ?= jsonschema pyyaml pydicom numpy scipy pylibjpeg pylibjpeg-libjpeg

.PHONY: run up test bench benchdeps proto proto-check compose-check module-check doc-check lint build deps pydeps plugins clean fuzz

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

pydeps:
	@$(PYTHON) -m pip --version >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip; }
	@$(PYTHON) -c "import jsonschema, yaml, pydicom, numpy, scipy, pylibjpeg, libjpeg" 2>/dev/null || \
	  $(PYTHON) -m pip install -q $(PIP_PACKAGES) 2>/dev/null || \
	  $(PYTHON) -m pip install -q --break-system-packages $(PIP_PACKAGES)

build: deps
	$(SWIFT) build -c $(CONFIGURATION) $(BUILD_FLAGS)

run: build up

up:
	$(BIN) up

test: deps pydeps compose-check module-check doc-check
	$(SWIFT) build --build-tests $(BUILD_FLAGS)
	ATRIUM_BINARY=$(CURDIR)/.build/debug/atrium $(SWIFT) test --skip-build $(BUILD_FLAGS)

# What only the benchmarks need: socat and iproute2 (the shaped-link figure), orthanc and nginx-light (peers, run in the same
# invocation on the same slices), imagecodecs (CharLS from Python, the reference for JPEG-LS sizes).
benchdeps:
	@missing=""; for p in socat iproute2 orthanc nginx-light; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  if command -v systemctl >/dev/null 2>&1; then systemctl disable --now orthanc nginx >/dev/null 2>&1 || true; fi; \
	fi
	@$(PYTHON) -c "import imagecodecs" 2>/dev/null || $(PYTHON) -m pip install -q imagecodecs 2>/dev/null || \
	  $(PYTHON) -m pip install -q --break-system-packages imagecodecs

bench: deps pydeps benchdeps
	$(SWIFT) build -c release --product atrium
	$(PYTHON) bench/run_bench.py --binary .build/release/atrium

plugins: $(PLUGINS)/protoc-gen-swift $(PLUGINS)/protoc-gen-grpc-swift-2

# The protoc plugins, built once from the pinned swift-protobuf and grpc-swift-protobuf (about 4 minutes).
$(PLUGINS)/protoc-gen-swift $(PLUGINS)/protoc-gen-grpc-swift-2 &: Package.swift
	$(SWIFT) build -c release --scratch-path .build-plugins --product protoc-gen-swift
	$(SWIFT) build -c release --scratch-path .build-plugins --product protoc-gen-grpc-swift-2
	touch $(PLUGINS)/protoc-gen-swift $(PLUGINS)/protoc-gen-grpc-swift-2

# Generates into $(1).
define generate
	rm -rf $(1) && mkdir -p $(1)
	protoc --proto_path=proto \
	  --plugin=protoc-gen-swift=$(PLUGINS)/protoc-gen-swift \
	  --plugin=protoc-gen-grpc-swift-2=$(PLUGINS)/protoc-gen-grpc-swift-2 \
	  --swift_out=$(1) --swift_opt=Visibility=Public,FileNaming=PathToUnderscores,UseAccessLevelOnImports=true \
	  --grpc-swift-2_out=$(1) --grpc-swift-2_opt=Visibility=Public,FileNaming=PathToUnderscores,UseAccessLevelOnImports=true \
	  $(PROTOS)
endef

proto: deps plugins
	$(call generate,$(GENERATED))

proto-check: deps plugins
	$(call generate,.build-plugins/generated-check)
	diff -ru $(GENERATED) .build-plugins/generated-check && echo "proto-check: generated code is up to date"

compose-check: pydeps
	$(PYTHON) scripts/compose_check.py

# The module graph against docs/architecture.md's rules (the SDK links no database and no service lifecycle, ...).
module-check: deps
	$(PYTHON) scripts/module_check.py

# Every public and package declaration of the SDK and the DICOM library has a documentation comment.
doc-check:
	$(PYTHON) scripts/doc_check.py

lint: proto-check compose-check module-check doc-check
	$(SWIFT) build -Xswiftc -warnings-as-errors

clean:
	rm -rf .build .build-plugins

# The DICOM parser under libFuzzer with AddressSanitizer, for FUZZ_SECONDS (default 600), seeded with the test
# corpus. Its own package in Fuzz/, so that the sanitizers rebuild only the parser. A crash leaves Fuzz/crash-*.
FUZZ_SECONDS ?= 600
fuzz: deps pydeps
	for f in Sources/AtriumDICOM/*.swift; do ln -sf ../../../$$f Fuzz/Sources/DICOMFuzz/; done
	cd Fuzz && $(SWIFT) build -c release --sanitize fuzzer --sanitize address -Xswiftc -parse-as-library \
		-Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp --product DICOMFuzz
	rm -rf Fuzz/.corpus && mkdir -p Fuzz/.corpus && $(PYTHON) Tests/AtriumDICOMTests/make_corpus.py Fuzz/.corpus >/dev/null
	rm -f Fuzz/.corpus/oracle.json
	Fuzz/.build/release/DICOMFuzz -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -timeout=10 -max_len=65536 -artifact_prefix=Fuzz/ Fuzz/.corpus
