"""Experiment pages: list, create/edit form with validation, lifecycle buttons, results."""

from __future__ import annotations

import html
import re
from typing import Any

from checkoutlab.experiments import service
from checkoutlab.merchants import service as merchants

from .conftest import Dashboard, Member, make_experiment, seed_exposures


def valid_form(**changes: str) -> dict[str, Any]:
    return {
        "key": "list_layout",
        "hypothesis": "A single list converts better on mobile.",
        "targeting": "context.device.type == 'mobile'",
        "control": "0",
        "v0_key": "control",
        "v0_weight": "1",
        "v1_key": "list",
        "v1_weight": "2",
        "v1_layout": "list",
        "v1_primary_color": "#0a7d5a",
        "v1_pay_button": "Pay now",
        "v1_verification": ["cvv"],
        "allocation_type": "fixed",
    } | changes


def field_error(page: str, field: str) -> str:
    found = re.search(rf'<p class="field-error" id="error-{field}" role="alert">([^<]*)</p>', page)
    assert found, f"no error shown for {field}"
    return html.unescape(found.group(1))


def test_create_through_the_form(signed_in: Dashboard, member: Member, database: Any) -> None:
    assert signed_in.get("/dashboard/new").status_code == 200
    response = signed_in.post("/dashboard/experiments", valid_form())
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/dashboard/experiments/list_layout?notice=created"
    with database.session() as db:
        read = service.read(service.get(db=db, merchant_id=member.merchant_id, key="list_layout"))
    assert read.status == "draft"
    assert read.targeting == "context.device.type == 'mobile'"
    control, variant = read.variants
    assert control.control and not variant.control and variant.weight == 2
    assert variant.config.layout == "list"
    assert variant.config.theme is not None and variant.config.theme.primary_color == "#0a7d5a"
    assert variant.config.copy_overrides == {"pay_button": "Pay now"}
    assert [str(s) for s in variant.config.verification_add] == ["cvv"]
    page = signed_in.get(response.headers["location"])
    assert "Experiment created as a draft" in page.text


def test_invalid_input_is_shown_next_to_the_fields(signed_in: Dashboard) -> None:
    response = signed_in.post(
        "/dashboard/experiments",
        valid_form(
            key="Bad Key!",
            v1_weight="-1",
            v1_primary_color="green",
            targeting="context.device.type ==",
            namespace_name="checkout",
            namespace_start="0.7",
            namespace_end="0.2",
        ),
    )
    assert response.status_code == 400
    page = response.text
    assert "The experiment was not saved" in page
    assert "'Bad Key!' is not a valid key: use lowercase letters" in field_error(page, "key")
    assert "positive" in field_error(page, "v1_weight")
    assert "six-digit hex" in field_error(page, "v1_primary_color")
    assert field_error(page, "targeting")
    assert "empty" in field_error(page, "namespace_name")
    assert 'value="Bad Key!"' in page  # what was typed is kept
    assert 'aria-invalid="true" aria-describedby="error-v1_weight"' in page


def test_variant_rules_are_shown_for_the_variants(signed_in: Dashboard) -> None:
    no_control = signed_in.post("/dashboard/experiments", valid_form(control=""))
    assert no_control.status_code == 400
    assert "exactly one variant must have control" in field_error(no_control.text, "variants")
    duplicate = signed_in.post("/dashboard/experiments", valid_form(v1_key="control"))
    assert "unique" in field_error(duplicate.text, "variants")
    lonely = signed_in.post("/dashboard/experiments", valid_form(v1_key=""))
    assert "at least 2" in field_error(lonely.text, "variants")


def test_existing_key_is_a_field_error(signed_in: Dashboard) -> None:
    assert signed_in.post("/dashboard/experiments", valid_form()).status_code == 303
    again = signed_in.post("/dashboard/experiments", valid_form())
    assert again.status_code == 400
    assert "already exists" in field_error(again.text, "key")


def test_user_input_is_escaped(signed_in: Dashboard) -> None:
    hostile = '<script>alert("x")</script>'
    response = signed_in.post("/dashboard/experiments", valid_form(hypothesis=hostile))
    assert response.status_code == 303
    for page in (signed_in.get("/dashboard"), signed_in.get("/dashboard/experiments/list_layout")):
        assert hostile not in page.text
        assert "&lt;script&gt;" in page.text
        assert "<script" not in page.text  # no script of our own either: CSP-friendly


def test_another_merchants_experiment_is_404(
    signed_in: Dashboard, make_member: Any, database: Any
) -> None:
    other = make_member("rival@other.example")
    make_experiment(database, other.merchant_id, key="secret_test")
    for path in ("/dashboard/experiments/secret_test", "/dashboard/experiments/secret_test/edit"):
        response = signed_in.get(path)
        assert response.status_code == 404
        assert "secret_test" in response.text and "Hypothesis" not in response.text
    for action in ("stop", "ship", "edit"):
        posted = signed_in.post(f"/dashboard/experiments/secret_test/{action}", {"variant": "x"})
        assert posted.status_code == 404
    with database.session() as db:
        assert service.get(db=db, merchant_id=other.merchant_id, key="secret_test").status == (
            "running"
        )
    assert "secret_test" not in signed_in.get("/dashboard").text


def test_start_stop_ship_buttons(signed_in: Dashboard, member: Member, database: Any) -> None:
    make_experiment(database, member.merchant_id, key="flow", start=False)
    base = "/dashboard/experiments/flow"
    page = signed_in.get(base)
    assert 'action="/dashboard/experiments/flow/start"' in page.text
    assert 'action="/dashboard/experiments/flow/stop"' not in page.text

    stop_draft = signed_in.post(f"{base}/stop")
    assert stop_draft.status_code == 409
    assert "Cannot stop experiment &#39;flow&#39;: it is draft" in stop_draft.text

    started = signed_in.post(f"{base}/start")
    assert started.status_code == 303 and started.headers["location"] == f"{base}?notice=started"
    page = signed_in.get(started.headers["location"])
    assert 'id="status">running<' in page.text and "Experiment started" in page.text
    assert 'action="/dashboard/experiments/flow/stop"' in page.text

    assert signed_in.post(f"{base}/stop").status_code == 303
    assert 'id="status">stopped<' in signed_in.get(base).text

    unknown = signed_in.post(f"{base}/ship", {"variant": "nope"})
    assert unknown.status_code == 400 and "No variant &#39;nope&#39;" in unknown.text
    shipped = signed_in.post(f"{base}/ship", {"variant": "treatment"})
    assert shipped.status_code == 303
    with database.session() as db:
        experiment = service.get(db=db, merchant_id=member.merchant_id, key="flow")
        assert (experiment.status, experiment.shipped_variant) == ("shipped", "treatment")
        config = merchants.config_of(merchants.get(db=db, merchant_id=member.merchant_id))
        assert config.layout == "list"  # the winner's form is the merchant default now
    assert signed_in.post(f"{base}/nonsense").status_code == 404


def test_edit_a_draft_and_the_running_rules(
    signed_in: Dashboard, member: Member, database: Any
) -> None:
    make_experiment(database, member.merchant_id, key="edit_me", start=False)
    form = signed_in.get("/dashboard/experiments/edit_me/edit")
    assert form.status_code == 200 and 'value="treatment"' in form.text
    changed = valid_form(key="ignored", hypothesis="Edited.", v1_key="bold", v1_weight="3")
    assert signed_in.post("/dashboard/experiments/edit_me/edit", changed).status_code == 303
    with database.session() as db:
        read = service.read(service.get(db=db, merchant_id=member.merchant_id, key="edit_me"))
    assert read.hypothesis == "Edited." and [v.key for v in read.variants] == ["control", "bold"]

    assert signed_in.post("/dashboard/experiments/edit_me/start").status_code == 303
    running = signed_in.get("/dashboard/experiments/edit_me/edit").text
    assert "only allocation, hypothesis, weights can change" in running
    assert re.search(r'id="targeting"[^>]*disabled', running)
    # weights may change while running (sticky); a bad one is shown next to its row
    bad = signed_in.post(
        "/dashboard/experiments/edit_me/edit",
        {
            "hypothesis": "Edited.",
            "v0_key": "control",
            "v0_weight": "1",
            "v1_key": "bold",
            "v1_weight": "0",
            "allocation_type": "fixed",
        },
    )
    assert bad.status_code == 400 and "positive" in field_error(bad.text, "v1_weight")
    good = signed_in.post(
        "/dashboard/experiments/edit_me/edit",
        {
            "hypothesis": "Edited.",
            "v0_key": "control",
            "v0_weight": "1",
            "v1_key": "bold",
            "v1_weight": "4",
            "allocation_type": "fixed",
            "targeting": "false",
        },
    )
    assert good.status_code == 303
    with database.session() as db:
        read = service.read(service.get(db=db, merchant_id=member.merchant_id, key="edit_me"))
    assert [v.weight for v in read.variants] == [1, 4]
    # a locked field sent anyway is not applied
    assert read.targeting == "context.device.type == 'mobile'"


def test_results_show_bars_timeline_and_no_srm_when_balanced(
    signed_in: Dashboard, member: Member, database: Any
) -> None:
    make_experiment(database, member.merchant_id)
    seed_exposures(database, member.merchant_id, "cta_copy", "control", 400, 120, prefix="c")
    seed_exposures(database, member.merchant_id, "cta_copy", "treatment", 400, 160, prefix="t")
    page = signed_in.get("/dashboard/experiments/cta_copy").text
    assert 'id="srm-warning"' not in page and "no mismatch" in page
    assert 'id="cumulative-chart"' in page
    assert page.count('<polyline points="') == 2
    conversion = page.split('data-metric="conversion"')[1].split("</figure>")[0]
    assert 'class="bar verdict-better" data-variant="treatment"' in conversion
    assert 'class="interval-bar"' in conversion
    assert "+33.33%" in conversion  # 40% vs 30%
    for metric in ("revenue_per_session", "fraud_rate", "decline_rate", "time_to_pay"):
        assert f'data-metric="{metric}"' in page
    listing = signed_in.get("/dashboard").text
    assert 'class="lift verdict-better">+33.33%' in listing
    assert "running" in listing and ">800<" in listing


def test_results_warn_about_sample_ratio_mismatch(
    signed_in: Dashboard, member: Member, database: Any
) -> None:
    make_experiment(database, member.merchant_id)
    seed_exposures(database, member.merchant_id, "cta_copy", "control", 300, 90, prefix="c")
    seed_exposures(database, member.merchant_id, "cta_copy", "treatment", 200, 60, prefix="t")
    page = signed_in.get("/dashboard/experiments/cta_copy").text
    assert 'id="srm-warning"' in page and "Sample ratio mismatch" in page
    assert "control 300 (expected 250)" in page
    assert ">SRM<" in signed_in.get("/dashboard").text


def test_results_warn_about_a_failing_guardrail(
    signed_in: Dashboard, member: Member, database: Any
) -> None:
    make_experiment(database, member.merchant_id)
    seed_exposures(
        database, member.merchant_id, "cta_copy", "control", 300, 100, declined=20, prefix="c"
    )
    seed_exposures(
        database, member.merchant_id, "cta_copy", "treatment", 300, 100, declined=120, prefix="t"
    )
    page = signed_in.get("/dashboard/experiments/cta_copy").text
    assert 'data-guardrail="decline_rate" data-status="failing"' in page
    assert "Guardrail failing: Decline rate" in page
    decline = page.split('data-metric="decline_rate"')[1].split("</figure>")[0]
    assert 'class="bar verdict-worse"' in decline  # higher declines are worse, drawn red


def test_draft_results_page_without_data(
    signed_in: Dashboard, member: Member, database: Any
) -> None:
    make_experiment(database, member.merchant_id, start=False)
    page = signed_in.get("/dashboard/experiments/cta_copy")
    assert page.status_code == 200
    assert "No exposures yet" in page.text and "no exposures yet" in page.text
    assert 'id="srm-warning"' not in page.text
