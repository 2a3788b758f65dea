# waihu: the two commands a newcomer needs are `make demo` and `make test`.
# Both install what is missing (system packages via scripts/deps.sh), then build.

CARGO ?= cargo

.PHONY: demo test deps build lint bench sip-bench amd-corpus clean

## Run the main job: AMD over the sample calls in samples/, with a table and a score.
demo: deps
	$(CARGO) build --release --bin waihu
	./target/release/waihu demo

## Run every test (unit, end-to-end, CLI, AMD corpus when ../shared/corpus/dev is there).
test: deps
	$(CARGO) test --workspace --no-fail-fast

deps:
	@./scripts/deps.sh

build: deps
	$(CARGO) build --release

## Formatting and lints, as CI runs them.
lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## criterion benches (numbers go to docs/benchmarks.md).
bench: deps
	$(CARGO) bench -p waihu-benches

## SIP throughput: waihu dial against a SIPp UAS (CALLS, CPS, HOLD as environment variables).
sip-bench: deps
	./scripts/sip-bench.sh

## Score AMD on a labelled corpus with the reference scorer: make amd-corpus CORPUS=dir
CORPUS ?= ../shared/corpus/dev
amd-corpus: build
	./target/release/waihu amd --dir $(CORPUS) --out target/predictions.csv
	python3 ../shared/corpus/score_amd.py $(CORPUS)/labels.csv target/predictions.csv

clean:
	$(CARGO) clean
