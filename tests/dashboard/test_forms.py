"""Form fields ↔ experiment schemas: values, and errors located at their fields."""

from __future__ import annotations

import pytest

from checkoutlab.dashboard import forms
from checkoutlab.experiments.schemas import ExperimentCreate, Status


@pytest.mark.parametrize(
    ("loc", "field"),
    [
        (("key",), "key"),
        (("variants",), "variants"),
        (("variants", 1, "weight"), "v3_weight"),  # the second filled row is form row 3
        (("variants", 0, "config", "theme", "primary_color"), "v0_primary_color"),
        (("variants", 1, "config", "copy_overrides", "pay_button"), "v3_pay_button"),
        (("namespace",), "namespace_name"),
        (("namespace", "end"), "namespace_end"),
        (("allocation", "min_share"), "allocation_min_share"),
        (("metrics",), ""),
        ((), ""),
    ],
)
def test_error_locations_map_to_fields(loc: tuple, field: str) -> None:
    assert forms.field_for(loc, [0, 3]) == field


def test_blank_rows_are_skipped_and_errors_name_the_right_row() -> None:
    state = forms.read_form(
        {"key": "k", "control": "0", "v0_key": "a", "v2_key": "b", "v2_weight": "-2"}
    )
    assert forms.to_create(state) is None
    assert list(state.errors) == ["v2_weight"]


def test_round_trip_through_the_edit_form() -> None:
    created = ExperimentCreate.model_validate(
        {
            "key": "k",
            "variants": [
                {"key": "a", "control": True},
                {
                    "key": "b",
                    "weight": 3,
                    "config": {"layout": "accordion", "verification_add": ["avs"]},
                },
            ],
            "namespace": {"name": "ns", "start": 0.25, "end": 0.5},
        }
    )
    from datetime import UTC, datetime

    from checkoutlab.experiments.schemas import ExperimentRead

    now = datetime.now(UTC)
    read = ExperimentRead(
        id="exp_1",
        status=Status.draft,
        seed="s",
        shipped_variant=None,
        created_at=now,
        updated_at=now,
        started_at=None,
        stopped_at=None,
        **created.model_dump(exclude={"seed"}),
    )
    state = forms.state_of(read)
    assert state.values["control"] == "0" and state.values["v1_verification"] == ["avs"]
    update = forms.to_update(state, Status.draft)
    assert update is not None
    assert update.variants == created.variants and update.namespace == created.namespace
    running = forms.to_update(state, Status.running)
    assert running is not None and running.weights == {"a": 1.0, "b": 3.0}
    assert running.variants is None and running.namespace is None
