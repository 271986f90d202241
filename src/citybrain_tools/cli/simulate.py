"""Simulated city traffic, and the demo that runs it beside a worker."""

from __future__ import annotations

import asyncio
import time

from citybrain.cli.common import broker_address, load_config


def cmd_simulate(args) -> int:
    from citybrain.kafka.topics import Topics
    from citybrain.progress import Progress
    from citybrain_tools.sample.registry_builder import load
    from citybrain_tools.simulate.runner import run, summary_text
    from citybrain_tools.simulate.traffic import CitySimulator
    cfg = load_config()
    sim = CitySimulator(load(cfg.registry_path), seed=args.seed, rate=args.rate,
                        duration=args.duration,
                        # unpaced: the whole span lies in the past, so no ts is "future"
                        start=time.time() - (args.duration if args.unpaced else 0),
                        malformed_share=args.malformed, scenarios=not args.no_scenarios,
                        # the gateway's silence is judged on Kafka time: only when paced
                        gateway=not args.no_scenarios and not args.unpaced)
    progress = Progress(f"模拟 simulate {args.rate:g}/s × {args.duration:g}s", total=args.duration)
    topics = Topics(cfg.settings.kafka.topic_prefix)

    async def main() -> tuple[dict, int]:
        if not args.respond:
            return await run(sim, broker_address(), topics, paced=not args.unpaced, progress=progress), 0
        from citybrain_tools.simulate.responders import respond
        stop = asyncio.Event()
        people = asyncio.create_task(respond(broker_address(), topics, stop, seed=args.seed))
        result = await run(sim, broker_address(), topics, paced=not args.unpaced, progress=progress)
        if args.linger:
            print(f"  模拟人员继续处置 simulated departments keep working for {args.linger:g}s …", flush=True)
            await asyncio.sleep(args.linger)
        stop.set()
        return result, await people

    result, commands = asyncio.run(main())
    print(summary_text(result))
    if args.respond:
        print(f"  模拟人员 simulated operator/departments/grid members sent {commands:,} commands")
    return 0


def cmd_demo(args) -> int:
    """Broker, topics, registry, one worker and the simulator, with where to look."""
    from citybrain_tools.simulate.demo import run_demo
    return run_demo(args.rate, args.duration, args.seed, keep=args.keep, keep_kafka=args.keep_kafka)
