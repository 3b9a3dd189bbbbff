# Shortcuts; the scripts under scripts/ are the reference.

.PHONY: run test fuzz bench bench-scale bench-http

run:
	scripts/run

test:
	scripts/test

# Every fuzz target for FUZZ_SECONDS each (default 30).
fuzz:
	scripts/fuzz

# Criterion micro-benchmarks, then the scale, burst and HTTP harnesses (need root).
bench: bench-scale bench-http
	cargo bench -p benches

# The scale and burst harness alone; prints one JSON report. CHURN_SECONDS=600 for the
# ten-minute memory stability run; the million-connection phase and the mixed burst run
# on their own: target/release/scale --phases million,mixed
CHURN_SECONDS ?= 60
bench-scale:
	cargo build --release --locked -p conntrack-exporter -p benches
	target/release/scale --churn-seconds $(CHURN_SECONDS)

# The HTTP endpoint under concurrent scrapes and attacks; prints one JSON report.
bench-http:
	cargo build --release --locked -p conntrack-exporter -p benches
	target/release/http_attacks
