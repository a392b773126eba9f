def test_full_checkout_with_test_card(new_checkout):
    checkout = new_checkout(customer="cus_1", line_items=[{"sku": "SKU-1", "quantity": 1}])
    profile = checkout.profile({"device": {"type": "desktop"}, "locale": "de-DE"})
    assert profile["amount"]["display"] == "25,99\xa0€"
    elements = checkout.client.post(
        "/v1/elements", json={"token": profile["token"]}, headers=checkout.merchant.public_headers
    )
    assert elements.status_code == 200, elements.text
    assert "<form" in elements.json()["html"] or "cl-root" in elements.json()["html"]
    paid = checkout.confirm(profile["token"], key="k1")
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "succeeded"
    session = checkout.client.get(
        f"/v1/checkout_sessions/{checkout.id}", headers=checkout.merchant.secret_headers
    ).json()
    assert session["status"] == "succeeded"
    assert session["payments"][0]["card"] == {"brand": "visa", "last4": "4242"}
