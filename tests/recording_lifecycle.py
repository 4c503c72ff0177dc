"""The recordings bucket's lifecycle as CloudFormation gets it (template.yaml transformed by
aws-sam-translator, intrinsics resolved for given parameters), and what S3 does with one key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from callbridge_local.intrinsics import Resolver, parameter_values
from callbridge_local.template import load_template

TEMPLATE = Path(__file__).resolve().parents[1] / "template.yaml"


@dataclass(frozen=True)
class Fate:
    """What the lifecycle does with one object: the day it is deleted and, if it moves, when and where."""

    expires_after: int
    transition_after: int | None
    storage_class: str | None
    expiring_rules: tuple[str, ...]  # the ids of every enabled rule that matches the key and expires it


def lifecycle_rules(params: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    template = load_template(TEMPLATE, params)
    resolver = Resolver(
        template, parameter_values(template, params), stack_name="s", region="eu-central-1", account_id="1"
    )
    config = resolver.resolve(template.resources["RecordingsBucket"].properties["LifecycleConfiguration"])
    rules: list[dict[str, Any]] = config["Rules"]
    return rules


def _prefix(rule: Mapping[str, Any]) -> str:
    return str(rule.get("Prefix") or (rule.get("Filter") or {}).get("Prefix") or "")


def fate(key: str, rules: list[dict[str, Any]]) -> Fate:
    """S3's reading: every enabled rule whose prefix the key starts with applies; the earliest
    expiration deletes the object. Raises when no rule expires it (it would be kept for ever)."""
    matching = [r for r in rules if r.get("Status") == "Enabled" and key.startswith(_prefix(r))]
    expiring = [r for r in matching if "ExpirationInDays" in r]
    if not expiring:
        raise AssertionError(f"no lifecycle rule expires {key!r}")
    first = min(expiring, key=lambda r: int(r["ExpirationInDays"]))
    transitions = [t for r in matching for t in r.get("Transitions") or []]
    transition = min(transitions, key=lambda t: int(t["TransitionInDays"])) if transitions else None
    return Fate(
        expires_after=int(first["ExpirationInDays"]),
        transition_after=int(transition["TransitionInDays"]) if transition else None,
        storage_class=str(transition["StorageClass"]) if transition else None,
        expiring_rules=tuple(str(r["Id"]) for r in expiring),
    )
