"""Time an experiment config's LLM distillation stage: cold (an empty LLM cache) and replayed from the cache.

    python scripts/bench_distill.py configs/movielens_full.yaml [--set a.b=c]... [--json]

Runs ``Pipeline.distill("llm")`` twice in a temporary run folder with a temporary LLM cache: the cold pass calls
the model for every title and prior; the replay deletes the stage's output and distils again, so every answer must
come from the cache (its ``calls`` must be 0). Prints queries, seconds, queries/s, model calls and cache hits.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any


def timed_distill(config: str, overrides: list[str]) -> list[dict[str, Any]]:
    """Rows for the cold and the cached pass of ``config``'s distillation."""
    from ialp.config import load_config
    from ialp.experiment import Pipeline

    rows = []
    with tempfile.TemporaryDirectory(prefix="ialp-bench-distill-") as tmp:
        cfg = load_config(config, [*overrides, f"llm.cache_dir={tmp}/llm-cache"])
        pipeline = Pipeline(cfg, Path(tmp) / "run", progress=False, log=lambda _msg: None)
        pipeline.world  # noqa: B018  (built once, outside the timed part)
        stage = pipeline.out / "distill"
        for label in ("cold", "cached"):
            for done in stage.glob("llm.*"):  # the stage's output and key: distil again, from the LLM cache
                done.unlink()
            t0 = time.perf_counter()
            pipeline.distill("llm")
            seconds = time.perf_counter() - t0
            stats = json.loads((stage / "llm.json").read_text())
            rows.append({"pass": label, "queries": stats["queries"], "ok": stats["ok"], "failed": stats["failed"],
                         "seconds": round(seconds, 1), "queries_per_s": round(stats["queries"] / seconds, 2),
                         "calls": stats["llm"]["calls"], "cache_hits": stats["llm"]["cache_hits"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = timed_distill(args.config, args.overrides)
    if args.json:
        print(json.dumps(rows))
        return
    print("| pass | queries | ok | failed | seconds | queries/s | model calls | cache hits |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['pass']} | {r['queries']} | {r['ok']} | {r['failed']} | {r['seconds']:,.1f} | "
              f"{r['queries_per_s']:.2f} | {r['calls']} | {r['cache_hits']} |")


if __name__ == "__main__":
    main()
