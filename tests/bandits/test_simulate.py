"""The checkout simulator and the side-by-side benchmark (short, seeded runs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from checkoutlab.bandits.cli import app
from checkoutlab.bandits.policies import LogisticSoftmaxPolicy, UCBPolicy
from checkoutlab.bandits.simulate import (
    ARM_INDEX,
    MERCHANT_ORDER,
    SimulationResult,
    generate_stream,
    simulate,
)
from checkoutlab.merchants.schemas import MethodType as M


@pytest.fixture(scope="module")
def stream():
    return generate_stream(2000, seed=5)


def test_stream_is_deterministic_and_respects_eligibility(stream) -> None:
    again = generate_stream(2000, seed=5)
    assert again.contexts == stream.contexts and again.methods == stream.methods
    assert np.array_equal(again.uniforms, stream.uniforms)
    assert generate_stream(2000, seed=6).contexts != stream.contexts
    for context, methods in zip(stream.contexts, stream.methods, strict=True):
        assert methods == [m for m in MERCHANT_ORDER if m in methods]  # merchant order
        assert (M.apple_pay in methods) == context["device"]["apple_pay"]
        assert (M.google_pay in methods) == context["device"]["google_pay"]
        assert (M.ideal in methods) == (context["currency"] == "EUR")
        assert M.card in methods
    assert len({tuple(m) for m in stream.methods}) > 5  # the eligible set varies


def test_preferences_depend_on_context_and_shift_half_way(stream) -> None:
    u = stream.utility
    country = np.array([c["location"]["country"] for c in stream.contexts])
    nl = country == "NL"
    assert np.nanmean(u[nl, ARM_INDEX[M.ideal]]) > np.nanmean(u[nl, ARM_INDEX[M.card]]) + 0.5
    de = country == "DE"
    before = np.arange(len(stream)) < stream.shift_round
    sepa, klarna = ARM_INDEX[M.sepa_debit], ARM_INDEX[M.klarna]
    assert np.nanmean(u[de & before, sepa]) > np.nanmean(u[de & before, klarna])
    assert np.nanmean(u[de & ~before, klarna]) > np.nanmean(u[de & ~before, sepa]) + 0.5
    assert stream.shift_round == 1000


def test_best_order_bounds_every_order_and_regret_is_non_negative(stream) -> None:
    rng = np.random.default_rng(0)
    for t in range(0, 2000, 37):
        methods = stream.methods[t]
        for _ in range(5):
            order = [methods[i] for i in rng.permutation(len(methods))]
            assert stream.conversion(t, order) <= stream.best[t] + 1e-12
    with pytest.raises(ValueError, match="cannot use"):
        t = next(i for i, c in enumerate(stream.contexts) if not c["device"]["apple_pay"])
        stream.conversion(t, [M.apple_pay])


def test_contextual_policy_beats_random_order_by_a_clear_margin(stream) -> None:
    result = simulate(
        {"logistic_softmax": LogisticSoftmaxPolicy(seed=0), "ucb": UCBPolicy(seed=0)},
        stream=stream,
        seed=5,
        vw=False,
    )
    table = result.summary.set_index("policy")
    assert {"random_order", "merchant_order", "context_rules"} <= set(table.index)
    contextual, random = table.loc["logistic_softmax"], table.loc["random_order"]
    assert contextual.conversion > random.conversion + 0.05
    assert contextual.cumulative_regret < 0.7 * random.cumulative_regret
    assert (table.cumulative_regret > 0).all()
    assert result.regret.shape == (2000, len(table))
    assert result.regret.index[-1] == 2000
    assert (result.regret.diff().iloc[1:] >= -1e-12).all().all()  # regret only accumulates
    assert np.allclose(result.regret.iloc[-1].to_numpy(), table.cumulative_regret.to_numpy())


def test_same_stream_and_outcomes_for_every_policy(stream) -> None:
    twins = {"a": UCBPolicy(seed=1), "b": UCBPolicy(seed=1)}
    table = simulate(twins, stream=stream, baselines=False, vw=False).summary.set_index("policy")
    assert table.loc["a", "conversion"] == table.loc["b", "conversion"]
    assert table.loc["a", "cumulative_regret"] == table.loc["b", "cumulative_regret"]


def test_vw_is_optional(stream, monkeypatch: pytest.MonkeyPatch) -> None:
    import checkoutlab.bandits.simulate as simulate_module

    monkeypatch.setattr(simulate_module, "vowpalwabbit_available", lambda: False)
    short = generate_stream(50, seed=1)
    result = simulate({}, stream=short, baselines=False, vw=None)
    assert result.summary.empty or "vw_cb_explore_adf" not in set(result.summary.policy)
    assert any("Vowpal Wabbit skipped" in note for note in result.notes)
    with pytest.raises(RuntimeError, match="vowpalwabbit"):
        simulate({}, stream=short, baselines=False, vw=True)


def test_cli_simulate_prints_json_and_writes_a_plot(tmp_path: Path) -> None:
    plot = tmp_path / "regret.png"
    result = CliRunner().invoke(
        app,
        ["simulate", "--rounds", "300", "--seed", "2", "--no-vw", "--json", "--plot", str(plot)],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["n_rounds"] == 300 and payload["shift_round"] == 150
    names = {row["policy"] for row in payload["policies"]}
    assert {"random_order", "merchant_order", "thompson", "linucb", "logistic_softmax"} <= names
    assert plot.stat().st_size > 10_000

    table = CliRunner().invoke(app, ["simulate", "--rounds", "200", "--no-vw"])
    assert table.exit_code == 0 and "conversion" in table.output and "thompson" in table.output


def test_simulation_result_to_dict_is_json_ready(stream) -> None:
    result = simulate({}, stream=generate_stream(100, seed=3), vw=False)
    assert isinstance(result, SimulationResult)
    json.dumps(result.to_dict())
