"""``citybrain warnings`` against real Kafka, no worker (publishing and listing need only the
broker; the commands run in this process): a holding and an upcoming warning published, listed holding first, ended — the
holding one's valid_to amended to now, the upcoming one cancelled — and listed again; a
refused publish sends nothing."""

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from citybrain.cli import main

from .kafka_helpers import consume, new_prefix, prepare

pytestmark = pytest.mark.integration


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


async def test_publish_list_and_end_through_kafka(kafka_bootstrap, monkeypatch, capsys):
    prefix = new_prefix("warncli")
    topics = await prepare(kafka_bootstrap, prefix)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("CITYBRAIN_TOPIC_PREFIX", prefix)

    async def run(*argv: str) -> Ran:
        """``citybrain warnings …`` in this process (a thread: it runs its own event loop),
        not a subprocess — each one's imports took seconds on a loaded machine."""
        capsys.readouterr()
        code = await asyncio.to_thread(main, ["warnings", *argv])
        out = capsys.readouterr()
        return Ran(code, out.out, out.err)

    # Begun a minute ago: ended within the second it began, a warning is withdrawn instead.
    began = (datetime.now(UTC) - timedelta(minutes=1)).isoformat(timespec="seconds")
    held = await run("publish", "--id", "SD-ZB-RS-001", "--issuer", "淄博市气象台", "--kind", "rainstorm",
                     "--level", "red", "--district", "370306", "--from", began, "--to", "+2h")
    assert held.returncode == 0, held.stderr
    assert "区域预警已发布 published 淄博市气象台 暴雨红色预警 SD-ZB-RS-001" in held.stdout
    later = await run("publish", "--id", "SD-ZB-FL-002", "--issuer", "淄博市水文中心", "--kind", "洪水",
                      "--level", "黄", "--street", "370306001", "--from", "+1h", "--to", "+3h")
    assert later.returncode == 0, later.stderr
    refused = await run("publish", "--id", "SD-ZB-RS-003", "--issuer", "淄博市气象台", "--kind", "rainstorm",
                        "--level", "red", "--district", "370399", "--to", "+1h")
    assert refused.returncode == 2 and "--district: 不在本市" in refused.stderr

    listed = await run("list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert "生效中 holding 1 · 待生效 upcoming 1" in lines[0]
    assert "生效中 holding" in lines[2] and "红色 red" in lines[2] and "SD-ZB-RS-001" in lines[2]
    assert "周村区 370306" in lines[3]
    assert "待生效 upcoming" in lines[4] and "黄色 yellow" in lines[4] and "洪水 flood" in lines[4]

    ended = await run("end", "--id", "SD-ZB-RS-001")
    assert ended.returncode == 0 and "截止改为现在 valid_to amended to now" in ended.stdout, ended.stderr
    withdrawn = await run("end", "--id", "SD-ZB-FL-002")
    assert withdrawn.returncode == 0 and "已撤销 not begun: cancelled" in withdrawn.stdout, withdrawn.stderr
    again = await run("end", "--id", "SD-ZB-RS-001")
    assert again.returncode == 1 and "已结束" in again.stderr
    assert (await run("end", "--id", "NO-SUCH")).returncode == 1

    records = await consume(kafka_bootstrap, topics.warnings, want=4, timeout=30, settle=1)
    assert [m.key for m in records].count(b"SD-ZB-RS-003") == 0        # the refused one sent nothing
    last = {m.key.decode(): orjson.loads(m.value) for m in records}
    assert len(records) == 4
    first_end = datetime.fromisoformat(last["SD-ZB-RS-001"]["valid_to"])
    assert first_end <= datetime.now(UTC) and last["SD-ZB-RS-001"].get("cancelled") is not True
    assert last["SD-ZB-RS-001"]["area"] == {"district_codes": ["370306"]}   # the rest as published
    assert last["SD-ZB-FL-002"]["cancelled"] is True

    after = await run("list")
    assert "生效中 holding 0 · 待生效 upcoming 0" in after.stdout and "(无 none)" in after.stdout
    everything = (await run("list", "--all")).stdout
    assert "已结束 ended" in everything and "已撤销 cancelled" in everything
