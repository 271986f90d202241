"""The benchmarks."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from citybrain.cli.common import broker_address, load_config
from citybrain.paths import state_dir


def cmd_bench(args) -> int:
    import json

    from citybrain_tools.bench import dispatch, normalize
    from citybrain_tools.bench.common import WorkerShape
    stamp = int(time.time())
    out = Path(args.out) if args.out else state_dir() / "bench" / f"{args.what}-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    from citybrain_tools.bench.common import drop_bench_topics
    try:
        if args.what == "normalize":
            result = asyncio.run(normalize.bench(broker_address(), args.records, seed=args.seed,
                                                 sensors=args.sensors, cameras=args.cameras))
            text = normalize.report(result)
        elif args.what == "history":
            from citybrain_tools.bench import history
            days = [int(d) for d in args.days.split(",") if d]
            result = asyncio.run(history.bench(broker_address(), days, args.orders_per_day, args.open,
                                               args.requests, seed=args.seed, keep=args.keep))
            png = out.with_suffix(".png")
            history.chart(result, png)
            text = history.report(result) + f"\n  图 chart: {png}"
        elif args.what == "console":
            from citybrain_tools.bench import console
            result = asyncio.run(console.bench(broker_address(), int(args.days.split(",")[0]), args.orders_per_day, args.open,
                                               args.requests, args.load_seconds, args.change_rate,
                                               args.cut_seconds, seed=args.seed, keep=args.keep,
                                               artifacts=out.parent))
            text = console.report(result)
        elif args.what == "failover":
            from citybrain_tools.bench import failover
            scenarios = [n for n in args.scenarios.split(",") if n]
            unknown = sorted(set(scenarios) - set(failover.SCENARIOS))
            if unknown:
                print(f"错误 unknown fault(s) {', '.join(unknown)}; choose from {', '.join(failover.SCENARIOS)}")
                return 2
            result, texts = {}, []
            guarantees = _guarantees(args)
            for g in guarantees:
                print(f"▶ 处理保证 processing guarantee {g}", flush=True)
                os.environ["CITYBRAIN_PROCESSING_GUARANTEE"] = g   # the bench workers inherit it
                result[g] = asyncio.run(failover.bench(broker_address(), scenarios, args.runs, args.rate, args.before,
                                                       args.after, probe_every=0.05, window=10.0, seed=args.seed,
                                                       console_apart=args.console_apart))
                texts.append(f"== {g}\n" + failover.report(result[g]))
            result = result if len(guarantees) > 1 else result[guarantees[0]]
            text = "\n".join(texts)
        elif args.what == "transactions":
            from citybrain_tools.bench import transactions
            result = asyncio.run(transactions.bench(broker_address(), args.runs))
            text = transactions.report(result)
        elif args.what == "normalize-batch-probe":
            from citybrain_tools.bench import batch_probe
            result = asyncio.run(batch_probe.bench(broker_address(), args.records, seed=args.seed))
            text = (f"批处理探针 batch-loop probe (our normaliser, no Faust): {result['rate']:,.0f} records/s "
                    f"({result['records']:,} in {result['seconds']}s)")
        else:
            rates = [float(r) for r in args.rates.split(",") if r]
            sizes = [int(n) for n in args.state_sizes.split(",") if n]
            guarantees = _guarantees(args)
            result, texts = {}, []
            for g in guarantees:   # one run, one broker: each guarantee beside its own plain loop
                print(f"▶ 处理保证 processing guarantee {g}", flush=True)
                os.environ["CITYBRAIN_PROCESSING_GUARANTEE"] = g   # the bench workers inherit it
                result[g] = asyncio.run(dispatch.bench(broker_address(), rates, args.duration, args.records, sizes,
                                                       seed=args.seed, windows_per_load=args.windows,
                                                       throughput_runs=args.throughput_runs,
                                                       warmup=args.warmup,
                                                       shape=WorkerShape(args.stage_processes, args.console_apart),
                                                       floor_beside=args.floor_beside))
                png = out.with_name(f"{out.stem}-{g}.png")
                dispatch.chart(result[g], png)
                texts.append(f"== {g}\n" + dispatch.report(result[g]) + f"\n  图 chart: {png}")
            result = result if len(guarantees) > 1 else result[guarantees[0]]
            text = "\n".join(texts)
    finally:
        asyncio.run(drop_bench_topics(broker_address()))   # leave the broker as we found it
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(text)
    print(f"  结果 result: {out}")
    return 0


def _guarantees(args) -> list[str]:
    """``--guarantees``, else the configured one."""
    return [g for g in (args.guarantees or "").split(",") if g] or [
        load_config().settings.worker.processing_guarantee]
