"""Delivery to people (DESIGN §16, docs/notifier.md): roster, rules, channels, the notifier."""
