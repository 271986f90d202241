"""Build a notifier from the configuration (the CLI and the tests)."""

from __future__ import annotations

import os
from pathlib import Path

from citybrain.config import Config
from citybrain.kafka.topics import Topics
from citybrain.notify.channels import EmailSender, Sender, SmsSender, WebhookSender
from citybrain.notify.roster import ReloadingRoster
from citybrain.notify.rules import Rules
from citybrain.notify.service import Notifier
from citybrain.notify.settings import NotifySettings
from citybrain.reporterkey import reporter_pseudonymiser


def roster_path(cfg: Config) -> Path:
    """CITYBRAIN_ROSTER_FILE points elsewhere in deployment (real people's numbers)."""
    return Path(os.environ.get("CITYBRAIN_ROSTER_FILE") or cfg.directory / "roster.toml")


def notify_path(cfg: Config) -> Path:
    return Path(os.environ.get("CITYBRAIN_NOTIFY_FILE") or cfg.directory / "notify.toml")


def place_namer(cfg: Config):
    streets, districts = cfg.city_map.street_names, cfg.city_map.district_names

    def place(snapshot: dict) -> str:
        loc = snapshot.get("location") or {}
        street = streets.get(loc.get("street_code", ""), "")
        district = districts.get(loc.get("district_code", ""), "")
        where = f"{district}{street}"
        address = snapshot.get("address")
        return f"{where} {address}" if address else f"{where}（网格 {loc.get('grid_code', '?')}）"
    return place


def build(bootstrap: str, cfg: Config | None = None, **kw) -> Notifier:
    cfg = cfg or Config()
    settings = NotifySettings.load(notify_path(cfg))
    roster = ReloadingRoster(roster_path(cfg), set(cfg.desks))
    rules = Rules(settings, place_namer(cfg), dict(cfg.desks), pseudonym=reporter_pseudonymiser(cfg, "notifier"))
    senders: dict[str, Sender] = {"email": EmailSender(settings.smtp), "webhook": WebhookSender(settings.webhook),
                                  "sms": SmsSender(settings.smpp)}
    return Notifier(bootstrap, Topics(cfg.settings.kafka.topic_prefix), roster, settings, rules, senders,
                    partitions=cfg.settings.kafka.partitions, **kw)
