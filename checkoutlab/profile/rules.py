"""Merchant rules: CEL expressions (cel-python) with actions.

A rule reads ``amount``, ``risk``, ``context`` and ``customer`` and, when true, requires
verification steps, prioritizes or hides a method, or sets the layout. CEL is chosen over
Python ``eval`` because it is side-effect free and terminates, so merchants can write rules
without being able to run code on the platform.

A rule whose expression cannot be evaluated for a shopper (e.g. it reads a context field the
browser did not send) does not apply; it is reported in ``RuleOutcome.errors`` instead of
failing the checkout.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import celpy
from celpy import celtypes
from celpy.celparser import CELParseError

if TYPE_CHECKING:
    from checkoutlab.merchants.schemas import Layout, MethodType, Rule, VerificationStep

log = logging.getLogger(__name__)
_ENV = celpy.Environment()


def compile_expression(expression: str) -> Any:
    """Compile a CEL expression; raise ``ValueError`` naming line and column on a syntax error."""
    try:
        ast = _ENV.compile(expression)
    except CELParseError as exc:
        line = getattr(exc, "line", None)
        column = getattr(exc, "column", None)
        where = f"line {line}, column {column}" if line is not None else "unknown position"
        raise ValueError(f"invalid CEL expression at {where}: {expression!r}") from exc
    return ast


@lru_cache(maxsize=4096)
def _program(expression: str) -> Any:
    return _ENV.program(compile_expression(expression))


@dataclass
class RuleOutcome:
    """The merged effect of every rule that matched, in rule order (last layout wins)."""

    require: set[VerificationStep] = field(default_factory=set)
    prioritize: list[MethodType] = field(default_factory=list)
    hide: set[MethodType] = field(default_factory=set)
    layout: Layout | None = None
    matched: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def evaluate_rules(rules: list[Rule], activation: dict[str, Any]) -> RuleOutcome:
    """Evaluate ``rules`` against plain-JSON ``activation`` and merge the matching actions."""
    outcome = RuleOutcome()
    if not rules:
        return outcome
    cel_activation = celpy.json_to_cel(activation)
    for index, rule in enumerate(rules):
        try:
            result = _program(rule.when).evaluate(cel_activation)
        except celpy.CELEvalError as exc:
            outcome.errors.append(f"rule {index}: {exc.args[0] if exc.args else exc}")
            continue
        if isinstance(result, celpy.CELEvalError):
            outcome.errors.append(f"rule {index}: {result.args[0] if result.args else result}")
            continue
        if not isinstance(result, celtypes.BoolType):
            outcome.errors.append(f"rule {index}: expression is not boolean")
            continue
        if not bool(result):
            continue
        outcome.matched.append(index)
        action = rule.then
        outcome.require.update(action.require)
        if action.prioritize is not None and action.prioritize not in outcome.prioritize:
            outcome.prioritize.append(action.prioritize)
        if action.hide is not None:
            outcome.hide.add(action.hide)
        if action.set_layout is not None:
            outcome.layout = action.set_layout
    if outcome.errors:
        log.info("merchant rules not evaluated: %s", "; ".join(outcome.errors))
    return outcome
