"""End-to-end tests: real players in headless Chromium, real packagers."""
