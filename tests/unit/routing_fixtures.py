"""Small rule sets for the router tests, written as YAML like an administrator would."""

from __future__ import annotations

from cti.domain.routing.model import RoutingRules
from cti.features.routing.rules import parse_rules

BASIC = """
skills: [billing, tech, general, vip_care]
tiers: {vip: {priority_boost: 100}, standard: {priority_boost: 0}}
default_queue: general
queues:
  billing:
    skills: {billing: 3}
    strategy: {strategy}
    max_wait_s: 120
    relaxation:
      - {after_s: 30, min_proficiency: 1}
      - {after_s: 60, add_queue: general}
    fallback: {action: callback}
  general:
    skills: {general: 1}
    max_wait_s: 300
    fallback: {action: voicemail}
  tech:
    skills: {tech: 2}
    max_wait_s: 100
    fallback: {action: queue, queue: general}
agents:
  a1: {skills: {billing: 5, general: 1}}
  a2: {skills: {billing: 3}}
  a3: {skills: {billing: 1, tech: 4}}
  a4: {skills: {general: 3}}
  a5: {skills: {tech: 2, general: 2}}
rules:
  - name: billing
    when: menu == "1"
    targets: [{queue: billing}]
  - name: tech
    when: menu == "2"
    targets: [{queue: tech}]
"""


def basic_rules(strategy: str = "longest_idle") -> RoutingRules:
    return parse_rules(BASIC.replace("{strategy}", strategy), "basic.yaml")
