"""Platform adapters (平台对接): cases handed over by other platforms (a 12345 hotline, 数字城管)
keep their own case id, and every public change of their order goes back (docs/integration.md)."""
