"""The holdout check of the churn-risk bands: each band, riskiest first, must have bought
less in the holdout than the next safer one; a band out of order is named."""

from __future__ import annotations

from personae.predict import _band_order_note


def _rows(*bought: float) -> list[dict[str, object]]:
    return [
        {"band": band, "customers": 10, "mean_expected": 0.0, "mean_actual": b}
        for band, b in zip(("high", "medium", "low"), bought, strict=True)
    ]


def test_bands_in_order() -> None:
    assert _band_order_note(_rows(0.12, 0.17, 1.29)) == (
        "the bands separate as they should: each bought less in the holdout, on average, than "
        "the next safer band (high risk 0.12, medium risk 0.17, low risk 1.29)."
    )


def test_a_middle_band_out_of_order_is_named() -> None:
    # the CDNOW sample with the defaults of init, ingest and run: high bought more than medium
    assert _band_order_note(_rows(0.23, 0.17, 1.29)) == (
        "the bands separate only in part: customers called high risk bought 0.23 on average "
        "in the holdout, as much as or more than those called medium risk (0.17); all bands: "
        "high risk 0.23, medium risk 0.17, low risk 1.29."
    )


def test_reversed_bands() -> None:
    note = _band_order_note(_rows(1.5, 0.4, 0.1))
    assert note.startswith("the bands do NOT separate as they should: customers called high")
