"""Routing rules from YAML: schema, validation with file:line:col, compilation to the model."""

from cti.features.routing.rules.loader import load_rules, parse_rules, summarize

__all__ = ["load_rules", "parse_rules", "summarize"]
