"""Grafana dashboards as code: executive, on-call and debug, plus their provisioning (see docs/dashboards.md)."""
