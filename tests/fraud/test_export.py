"""Platform payments exported in the Handbook format load through the data contract."""

from __future__ import annotations

from checkoutlab.fraud.data import REQUIRED_COLUMNS, load_transactions
from checkoutlab.fraud.export import platform_transactions


def test_export_carries_labels_context_and_loads_back(
    client, merchant, new_checkout, database, tmp_path
) -> None:
    good = new_checkout(customer="cus_a", amount=1999)
    paid = good.confirm(
        good.profile({"device": {"type": "mobile"}, "country": "NL"})["token"], key="a"
    )
    bad = new_checkout(customer="cus_b", amount=500)
    declined = bad.confirm(bad.profile()["token"], key="b", card="4000000000000002")
    guest = new_checkout(amount=700, currency="JPY")
    guest.confirm(guest.profile()["token"], key="c", method="klarna")  # JPY: no klarna offered
    client.post(
        "/v1/outcomes",
        json={"payment_id": paid.json()["id"], "type": "dispute"},
        headers=merchant.secret_headers,
    )
    with database.session() as session:
        frame = platform_transactions(db=session, merchant_id=merchant.id)
    assert list(frame["TRANSACTION_ID"]) == [
        paid.json()["id"],
        declined.json()["error"]["payment"]["id"],
    ]
    assert list(frame["TX_FRAUD"]) == [1, 0]
    assert list(frame["TX_AMOUNT"]) == [19.99, 5.0]
    assert list(frame["TERMINAL_ID"]) == [merchant.id, merchant.id]
    assert frame.loc[0, "DEVICE_TYPE"] == "mobile" and frame.loc[0, "COUNTRY"] == "NL"
    assert frame.loc[0, "LABEL_REPORTED_AT"] >= frame.loc[0, "TX_DATETIME"]
    path = tmp_path / "platform.parquet"
    frame.to_parquet(path)
    loaded = load_transactions(path)
    assert set(REQUIRED_COLUMNS) <= set(loaded.columns)
    assert len(loaded) == 2


def test_export_command_writes_a_loadable_file(
    database, merchant, new_checkout, tmp_path, monkeypatch
) -> None:
    from typer.testing import CliRunner

    from checkoutlab.cli import app
    from checkoutlab.config import get_settings

    checkout = new_checkout(customer="cus_cli")
    assert checkout.confirm(checkout.profile()["token"], key="k").status_code == 200
    monkeypatch.setenv("CHECKOUTLAB_DATABASE_URL", database.url)
    get_settings.cache_clear()
    try:
        out = tmp_path / "platform.csv"
        result = CliRunner().invoke(
            app, ["fraud", "export", "-o", str(out), "--merchant", merchant.id]
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "wrote 1 payments" in result.output
    assert load_transactions(out)["CUSTOMER_ID"].tolist() == [f"{merchant.id}:cus_cli"]


def test_customer_ids_are_scoped_by_merchant(make_merchant, client, database) -> None:
    from checkoutlab.fraud.export import customer_key

    assert customer_key("mer_a", "42", "cs_1") != customer_key("mer_b", "42", "cs_2")
    assert customer_key("mer_a", None, "cs_1") == "mer_a:guest:cs_1"
