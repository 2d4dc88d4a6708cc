"""Contact rules: the limits a business declares for contacting debtors (a contract).

The rules file says how many calls, at which hours, how long after a conversation or a dispute;
`features.compliance` computes from the contact history what the rules forbid on a day, and the
worklist, the KPIs and the simulator all name what they block with `BlockKind`. The rules
packaged with cobranza (`contact_rules.yaml` beside this module) apply unless a settings file
names others.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_RULES_FILE = Path(__file__).with_name("contact_rules.yaml")
"""The contact rules shipped with cobranza: Regulation F limits and two stricter US states."""


class BlockKind(StrEnum):
    """Each kind of rule that can block a contact, named once for every report of blocks."""

    CALL_CAP = "call cap"
    """`max_calls_7d` call attempts in 7 consecutive days already made."""
    RECENT_CONVERSATION = "recent conversation"
    """A telephone conversation less than `conversation_gap_days` ago."""
    OPTED_OUT = "opted out"
    """The debtor opted out of the channel (never expires)."""
    DISPUTE = "dispute"
    """A dispute under verification pauses every channel for `dispute_pause_days`."""
    OUTSIDE_HOURS = "outside hours"
    """The hour falls outside `earliest_hour`-`latest_hour` in the debtor's local time."""


class Limits(BaseModel):
    """The limits of one jurisdiction (the defaults: Regulation F and 8:00-21:00 local)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_calls_7d: int = Field(default=7, ge=0)
    conversation_gap_days: int = Field(default=7, ge=0)
    earliest_hour: int = Field(default=8, ge=0, le=23)
    latest_hour: int = Field(default=21, ge=1, le=24)
    dispute_pause_days: int = Field(default=30, ge=0)


class ContactRules(BaseModel):
    """Default limits and stricter ones per jurisdiction (never looser: checked)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: Limits = Limits()
    jurisdictions: dict[str, dict[str, int]] = {}

    def for_region(self, region: str | None) -> Limits:
        override = self.jurisdictions.get(str(region), {}) if region is not None else {}
        return self.default.model_copy(update=override) if override else self.default

    def lookback_days(self) -> int:
        """How far back the rules look at contacts (opt-outs excepted: they never expire)."""
        limits = [self.default, *(self.for_region(r) for r in self.jurisdictions)]
        return 1 + max(7, *(max(x.dispute_pause_days, x.conversation_gap_days) for x in limits))

    def model_post_init(self, _: Any) -> None:
        base = self.default
        for region, override in self.jurisdictions.items():
            limits = Limits(**{**base.model_dump(), **override})
            looser = (
                limits.max_calls_7d > base.max_calls_7d
                or limits.conversation_gap_days < base.conversation_gap_days
                or limits.earliest_hour < base.earliest_hour
                or limits.latest_hour > base.latest_hour
                or limits.dispute_pause_days < base.dispute_pause_days
            )
            if looser:
                raise ValueError(f"rules for {region} are looser than the default")


class RulesError(ValueError):
    """The contact rules file is missing or not valid (the message names the file and why)."""


def rules_file(configured: str | Path | None) -> Path:
    """The rules file a setting or option names; the packaged default when it names none."""
    return Path(configured) if configured else DEFAULT_RULES_FILE


def load_rules(path: str | Path | None = None) -> ContactRules:
    """The contact rules of a YAML file (default: the packaged rules); `RulesError` naming the
    file and the problem."""
    path = rules_file(path)
    try:
        return ContactRules.model_validate(yaml.safe_load(path.read_text()) or {})
    except OSError as error:
        raise RulesError(f"contact rules {path}: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "unreadable"
        raise RulesError(f"contact rules {path}: not valid YAML, {problem}{where}") from None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        raise RulesError(f"contact rules {path}: {where}: {first['msg']}") from None
