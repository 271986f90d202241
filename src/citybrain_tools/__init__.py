"""Tooling around citybrain — not the product: the demo and its simulated city, benchmarks,
the SAMPLE city data and a local Apache Kafka (one node or three) started from Maven jars.

The product (``citybrain``) never imports this package (tests/unit/test_layers.py); its
commands join the ``citybrain`` command line through the ``citybrain.commands`` entry point
(pyproject.toml), so an image built without the tooling simply lacks them."""
