"""`make bench`: run every benchmark; each writes bench/results/<name>.json."""

from __future__ import annotations

import importlib
import json
import sys

from bench.common import write_result

BENCHES = ["bench.nonce_rpc", "bench.bench_resilience", "bench.feed_throughput", "bench.venue_ws", "bench.venue_orders",
           "bench.tick_to_trade", "bench.executor_saturation", "bench.metrics_cost"]


def main() -> int:
    failed = 0
    for name in BENCHES:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            print(f"{name}: skipped ({exc})")
            continue
        print(f"== {name}", flush=True)
        try:
            result = module.run()
        except Exception as exc:  # one broken bench must not hide the others
            failed += 1
            print(f"{name}: FAILED {type(exc).__name__}: {exc}")
            continue
        short = name.rsplit(".", 1)[-1].removeprefix("bench_")
        path = write_result(short, {k: v for k, v in result.items() if k != "name"})
        print(json.dumps({"results": result.get("results"), "ratios": result.get("ratios")}, indent=1))
        print(f"-> {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
