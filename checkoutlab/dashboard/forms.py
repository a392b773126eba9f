"""The experiment form: HTML form fields ↔ the pydantic experiment schemas.

The form is a flat list of fields (``v0_key``, ``v0_weight``, ``namespace_start``...). This
module turns them into the JSON shape that ``ExperimentCreate``/``ExperimentUpdate`` validate,
so the dashboard enforces exactly the rules of the API, and maps each pydantic error location
back to the field it belongs to, so the message is shown next to what has to change.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, get_args

from pydantic import ValidationError

from checkoutlab.experiments.schemas import (
    ExperimentCreate,
    ExperimentRead,
    ExperimentUpdate,
    OrderingPolicyName,
    Status,
)
from checkoutlab.merchants.schemas import Layout, VerificationStep

MIN_ROWS = 4
MAX_ROWS = 10
# The choices come from the schemas the API validates with, so the form never offers a
# value the service would refuse (or misses one it accepts).
VERIFICATION_STEPS = tuple(step.value for step in VerificationStep)
LAYOUTS = tuple(layout.value for layout in Layout)
ORDERING_POLICIES: tuple[str, ...] = get_args(OrderingPolicyName)
# variant config location -> form field suffix
_CONFIG_FIELDS = {
    "layout": "layout",
    "ordering_policy": "ordering_policy",
    "theme": "primary_color",
    "copy_overrides": "pay_button",
    "verification_add": "verification",
}


@dataclass
class FormState:
    """What the template shows: submitted (or stored) values and errors by field name.

    ``errors[""]`` holds the messages that belong to no single field.
    """

    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    rows: int = MIN_ROWS

    def add_error(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    @property
    def has_errors(self) -> bool:
        return bool(self.errors)


def _text(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name)
    return str(value).strip() if value is not None else ""


def _row_count(form: Mapping[str, Any]) -> int:
    rows = MIN_ROWS
    for i in range(MAX_ROWS):
        if f"v{i}_key" in form:
            rows = max(rows, i + 1)
    return rows


def read_form(form: Any) -> FormState:
    """The submitted fields as a :class:`FormState` (values only; no validation yet)."""
    values: dict[str, Any] = {}
    for name in (
        "key",
        "hypothesis",
        "targeting",
        "namespace_name",
        "namespace_start",
        "namespace_end",
        "allocation_type",
        "allocation_min_share",
        "allocation_explore_units",
        "control",
    ):
        values[name] = _text(form, name)
    rows = _row_count(form)
    for i in range(rows):
        for suffix in (
            "key",
            "name",
            "weight",
            "layout",
            "ordering_policy",
            "primary_color",
            "pay_button",
        ):
            values[f"v{i}_{suffix}"] = _text(form, f"v{i}_{suffix}")
        getlist = getattr(form, "getlist", None)
        steps = getlist(f"v{i}_verification") if getlist else form.get(f"v{i}_verification", [])
        values[f"v{i}_verification"] = [s for s in steps if s in VERIFICATION_STEPS]
    return FormState(values=values, rows=rows)


def state_of(experiment: ExperimentRead) -> FormState:
    """The stored experiment as form values (for the edit page)."""
    values: dict[str, Any] = {
        "key": experiment.key,
        "hypothesis": experiment.hypothesis,
        "targeting": experiment.targeting or "",
        "namespace_name": experiment.namespace.name if experiment.namespace else "",
        "namespace_start": f"{experiment.namespace.start:g}" if experiment.namespace else "",
        "namespace_end": f"{experiment.namespace.end:g}" if experiment.namespace else "",
        "allocation_type": experiment.allocation.type,
        "allocation_min_share": f"{experiment.allocation.min_share:g}",
        "allocation_explore_units": str(experiment.allocation.explore_units),
        "control": "",
    }
    for i, variant in enumerate(experiment.variants):
        config = variant.config
        values |= {
            f"v{i}_key": variant.key,
            f"v{i}_name": variant.name or "",
            f"v{i}_weight": f"{variant.weight:g}",
            f"v{i}_layout": config.layout or "",
            f"v{i}_ordering_policy": config.ordering_policy or "",
            f"v{i}_primary_color": config.theme.primary_color if config.theme else "",
            f"v{i}_pay_button": config.copy_overrides.get("pay_button", ""),
            f"v{i}_verification": [str(s) for s in config.verification_add],
        }
        if variant.control:
            values["control"] = str(i)
    rows = min(MAX_ROWS, max(MIN_ROWS, len(experiment.variants) + 1))
    return FormState(values=values, rows=rows)


def _variants(state: FormState) -> tuple[list[dict[str, Any]], list[int]]:
    """The filled-in variant rows as dicts, and the form row of each (for error locations)."""
    v = state.values
    variants, rows = [], []
    for i in range(state.rows):
        key = v.get(f"v{i}_key", "")
        if not key:
            continue
        config: dict[str, Any] = {}
        if v.get(f"v{i}_layout"):
            config["layout"] = v[f"v{i}_layout"]
        if v.get(f"v{i}_ordering_policy"):
            config["ordering_policy"] = v[f"v{i}_ordering_policy"]
        if v.get(f"v{i}_primary_color"):
            config["theme"] = {"primary_color": v[f"v{i}_primary_color"]}
        if v.get(f"v{i}_pay_button"):
            config["copy_overrides"] = {"pay_button": v[f"v{i}_pay_button"]}
        if v.get(f"v{i}_verification"):
            config["verification_add"] = list(v[f"v{i}_verification"])
        variant: dict[str, Any] = {"key": key, "control": v.get("control") == str(i)}
        if v.get(f"v{i}_name"):
            variant["name"] = v[f"v{i}_name"]
        if v.get(f"v{i}_weight"):
            variant["weight"] = v[f"v{i}_weight"]
        if config:
            variant["config"] = config
        variants.append(variant)
        rows.append(i)
    return variants, rows


def _namespace(state: FormState) -> dict[str, Any] | None:
    v = state.values
    if not v.get("namespace_name"):
        return None
    namespace: dict[str, Any] = {"name": v["namespace_name"]}
    for part in ("start", "end"):
        if v.get(f"namespace_{part}"):
            namespace[part] = v[f"namespace_{part}"]
    return namespace


def _allocation(state: FormState) -> dict[str, Any]:
    v = state.values
    allocation: dict[str, Any] = {"type": v.get("allocation_type") or "fixed"}
    if v.get("allocation_min_share"):
        allocation["min_share"] = v["allocation_min_share"]
    if v.get("allocation_explore_units"):
        allocation["explore_units"] = v["allocation_explore_units"]
    return allocation


def field_for(loc: Sequence[Any], rows: Sequence[int]) -> str:
    """The form field of a pydantic error location ('' when it belongs to the whole form)."""
    if not loc:
        return ""
    head = str(loc[0])
    if head == "variants":
        if len(loc) >= 2 and isinstance(loc[1], int) and loc[1] < len(rows):
            row = rows[loc[1]]
            rest = [str(p) for p in loc[2:]]
            if rest[:1] == ["config"] and len(rest) >= 2:
                return f"v{row}_{_CONFIG_FIELDS.get(rest[1], 'key')}"
            return f"v{row}_{rest[0]}" if rest else f"v{row}_key"
        return "variants"
    if head == "namespace":
        return f"namespace_{loc[1]}" if len(loc) > 1 else "namespace_name"
    if head == "allocation":
        return f"allocation_{loc[1]}" if len(loc) > 1 else "allocation_type"
    if head in ("key", "hypothesis", "targeting"):
        return head
    if head == "weights":
        return "variants"
    return ""


def _quoted(message: str) -> str:
    found = re.search(r"'([^']+)'", message)
    return found.group(1) if found else ""


_KEY_RULE = "use lowercase letters, digits, '_' and '-', starting with a letter or digit"


def _message(error: Mapping[str, Any]) -> str:
    """pydantic's message, minus its prefix; a key's pattern is said in words, not a regex."""
    loc = error.get("loc") or ()
    if error.get("type") == "string_pattern_mismatch" and loc and str(loc[-1]) in ("key", "name"):
        return f"{error.get('input')!r} is not a valid key: {_KEY_RULE}"
    return str(error.get("msg", "invalid value")).removeprefix("Value error, ")


def _collect(state: FormState, exc: ValidationError, rows: Sequence[int]) -> None:
    for error in exc.errors():
        state.add_error(field_for(error["loc"], rows), _message(error))


def to_create(state: FormState) -> ExperimentCreate | None:
    """``ExperimentCreate`` from the form, or None with ``state.errors`` filled in."""
    variants, rows = _variants(state)
    body: dict[str, Any] = {
        "key": state.values.get("key", ""),
        "hypothesis": state.values.get("hypothesis", ""),
        "variants": variants,
        "targeting": state.values.get("targeting") or None,
        "namespace": _namespace(state),
        "allocation": _allocation(state),
    }
    try:
        return ExperimentCreate.model_validate(body)
    except ValidationError as exc:
        _collect(state, exc, rows)
        return None


def editable(status: Status) -> set[str]:
    """Which parts the form may change in this status (mirrors the service's rule)."""
    if status is Status.draft:
        return {"hypothesis", "variants", "targeting", "namespace", "allocation"}
    if status is Status.running:
        return {"hypothesis", "weights", "allocation"}
    return {"hypothesis"}


def to_update(state: FormState, status: Status) -> ExperimentUpdate | None:
    """``ExperimentUpdate`` with only what ``status`` allows, or None with errors filled in."""
    allowed = editable(status)
    variants, rows = _variants(state)
    body: dict[str, Any] = {"hypothesis": state.values.get("hypothesis", "")}
    if "variants" in allowed:
        body["variants"] = variants
        body["targeting"] = state.values.get("targeting") or None
        body["namespace"] = _namespace(state)
    if "weights" in allowed:
        body["weights"] = {variant["key"]: variant.get("weight", "") for variant in variants}
    if "allocation" in allowed:
        body["allocation"] = _allocation(state)
    try:
        return ExperimentUpdate.model_validate(body)
    except ValidationError as exc:
        for error in exc.errors():
            loc = error["loc"]
            if loc and loc[0] == "weights":
                # per-key type errors locate the key; the validator's message quotes it
                key = str(loc[1]) if len(loc) > 1 else _quoted(_message(error))
                row = next(
                    (r for r, var in zip(rows, variants, strict=True) if var["key"] == key), None
                )
                name = f"v{row}_weight" if row is not None else "variants"
                state.add_error(name, _message(error))
            else:
                state.add_error(field_for(loc, rows), _message(error))
        return None
