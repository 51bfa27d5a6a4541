"""`personae synth`: realistic multi-table customer data with planted ground truth.

Everything is vectorised with numpy and written with pyarrow, so a million customers and about
ten million order lines take well under a minute. The truth (segment, purchase rate, lifetime,
spend level of every customer) goes to `truth/`, apart from the data a user would have.

Purchases follow the Pareto/NBD story (Schmittlein, Morrison & Colombo 1987): each customer
buys as a Poisson process with a Gamma-distributed rate while alive, and dies after an
exponential lifetime. Spend per unit follows a Gamma with a customer-level scale
(Fader, Hardie & Lee 2005's Gamma-Gamma).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from personae.errors import PersonaeError
from personae.synth.segments import (
    CATEGORIES,
    CHANNELS,
    DEVICES,
    SEGMENTS,
    SURVEY_ITEMS,
    THEMES,
)

__all__ = ["generate", "SynthResult"]

FIRST_NAMES_F = (
    "Anna",
    "Maria",
    "Emma",
    "Olivia",
    "Sofia",
    "Laura",
    "Julia",
    "Grace",
    "Chloe",
    "Mia",
    "Ella",
    "Ruth",
    "Alice",
    "Nora",
    "Ines",
    "Lena",
)
FIRST_NAMES_M = (
    "James",
    "Liam",
    "Noah",
    "Lucas",
    "Ben",
    "Tom",
    "Jack",
    "Leo",
    "Adam",
    "Paul",
    "Omar",
    "Felix",
    "Hugo",
    "Max",
    "Sam",
    "Eric",
)
LAST_NAMES = (
    "Smith",
    "Jones",
    "Brown",
    "Taylor",
    "Wilson",
    "Evans",
    "Thomas",
    "Walker",
    "Wright",
    "Green",
    "Hall",
    "Wood",
    "Clarke",
    "Hughes",
    "Lewis",
    "Price",
    "Bell",
    "Ward",
    "Cox",
    "Reed",
)
PLACES = (  # country, region, city, postal prefix, weight
    ("GB", "England", "London", "E1", 0.22),
    ("GB", "England", "Manchester", "M1", 0.08),
    ("GB", "Scotland", "Glasgow", "G1", 0.05),
    ("GB", "Wales", "Cardiff", "CF1", 0.03),
    ("DE", "Bavaria", "Munich", "80", 0.10),
    ("DE", "Berlin", "Berlin", "10", 0.09),
    ("FR", "Ile-de-France", "Paris", "75", 0.12),
    ("FR", "Auvergne-Rhone-Alpes", "Lyon", "69", 0.05),
    ("NL", "North Holland", "Amsterdam", "10", 0.07),
    ("ES", "Madrid", "Madrid", "28", 0.08),
    ("IT", "Lombardy", "Milan", "20", 0.06),
    ("IE", "Leinster", "Dublin", "D0", 0.05),
)
EDUCATION = ("secondary", "vocational", "bachelor", "master", "doctorate")
MARITAL = ("single", "married", "partner", "divorced", "widowed")
OCCUPATIONS = (
    "student",
    "clerical",
    "professional",
    "manager",
    "retired",
    "trades",
    "homemaker",
    "self-employed",
)
INDUSTRIES = ("retail", "hospitality", "construction", "health", "education", "software")
OS_BY_DEVICE = {
    "desktop": ("Windows", "macOS", "Linux"),
    "mobile": ("iOS", "Android"),
    "tablet": ("iPadOS", "Android"),
}
BROWSERS = ("Chrome", "Safari", "Firefox", "Edge")
PROSPECT_SHARE = 0.12  # customers who sign up and browse but never buy
JOURNEY = ("page_view", "search", "product_view", "add_to_cart", "checkout")


@dataclass
class SynthResult:
    """Where the files went and how many rows each has."""

    out_dir: str
    rows: dict[str, int]
    seconds: float


def _str_ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    s = pc.utf8_lpad(pc.cast(pa.array(numbers), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, s, "")


def _pick(rng: np.random.Generator, probs: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Draw one category per row from the row's group's probability vector."""
    cum = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
    u = rng.random(len(groups))
    return (u[:, None] > cum[groups]).sum(axis=1).clip(max=probs.shape[1] - 1)


def _take(values: tuple[str, ...], idx: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(values, dtype=object)[idx], pa.string())


def _write(table: pa.Table, path: Path, fmt: str) -> None:
    if fmt == "parquet":
        pq.write_table(table, path.with_suffix(".parquet"))
    else:
        pacsv.write_csv(table, path.with_suffix(".csv"), pacsv.WriteOptions(quoting_style="needed"))


def generate(
    out_dir: str | Path,
    customers: int = 5000,
    seed: int = 42,
    start: date = date(2022, 1, 1),
    end: date = date(2024, 12, 31),
    fmt: str = "csv",
    progress: Callable[[str], None] | None = None,
) -> SynthResult:
    """Write customers, orders, events, responses, feedback and accounts to `out_dir`, the
    planted truth to `out_dir/truth/`, and a ready personae.toml."""
    import time

    t0 = time.perf_counter()
    if customers < 1:
        raise PersonaeError(f"--customers must be at least 1 (got {customers}).")
    if end <= start:
        raise PersonaeError(f"The end date {end} must be after the start date {start}.")
    out = Path(out_dir)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    say = progress or (lambda _msg: None)
    n = customers
    seg = rng.choice(len(SEGMENTS), size=n, p=np.array([s.share for s in SEGMENTS]))
    S = {
        f: np.array([getattr(s, f) for s in SEGMENTS])
        for f in (
            "female",
            "children",
            "orders_per_year",
            "rate_shape",
            "lifetime_days",
            "basket",
            "spend",
            "discount",
            "occasion",
            "weekend",
            "evening",
            "consent",
            "review_rate",
            "b2b",
        )
    }
    rows: dict[str, int] = {}

    # ---- customers -----------------------------------------------------------------------
    say("customers")
    start_s = np.datetime64(start, "s").astype(np.int64)
    end_s = np.datetime64(end, "s").astype(np.int64) + 86399
    span = end_s - start_s
    acquired = start_s + (rng.random(n) * (span - 30 * 86400)).astype(np.int64)
    # occasion buyers also come in at occasions: their first order is an occasion order too
    # (drawn from a second stream, so every other draw stays what it was)
    occ_rng = np.random.default_rng([seed, 1])
    acquired = _occasions(
        occ_rng,
        acquired,
        S["occasion"][seg],
        np.full(n, start_s),
        np.full(n, end_s - 30 * 86400),
        np.zeros(n, bool),
    )
    age_mu = np.array([s.age[0] for s in SEGMENTS])[seg]
    age_sd = np.array([s.age[1] for s in SEGMENTS])[seg]
    age = np.clip(rng.normal(age_mu, age_sd), 18, 92)
    birth = (np.datetime64(end, "D") - (age * 365.25).astype(np.int64)).astype("datetime64[D]")
    female = rng.random(n) < S["female"][seg]
    inc_mu = np.array([s.income[0] for s in SEGMENTS])[seg]
    inc_sd = np.array([s.income[1] for s in SEGMENTS])[seg]
    income = np.round(np.exp(rng.normal(inc_mu, inc_sd)), -2)
    children = rng.poisson(S["children"][seg])
    married = rng.random(n) < np.where(children > 0, 0.75, 0.35)
    marital = np.where(married, 1, rng.choice([0, 2, 3, 4], size=n, p=[0.6, 0.25, 0.1, 0.05]))
    place_w = np.array([p[4] for p in PLACES])
    place = rng.choice(len(PLACES), size=n, p=place_w / place_w.sum())
    first_idx = rng.integers(0, 16, n)
    first = np.where(
        female,
        np.asarray(FIRST_NAMES_F, object)[first_idx],
        np.asarray(FIRST_NAMES_M, object)[first_idx],
    )
    last = np.asarray(LAST_NAMES, object)[rng.integers(0, len(LAST_NAMES), n)]
    cid = _str_ids("C", np.arange(1, n + 1), 7)
    consent = rng.random(n) < S["consent"][seg]
    has_b2b = rng.random(n) < S["b2b"][seg]
    n_acc = max(1, int(has_b2b.sum() // 3))
    account_of = np.where(has_b2b, rng.integers(1, n_acc + 1, n), 0)
    acc_ids = _str_ids("A", account_of, 6)
    acc_col = pc.if_else(pa.array(account_of > 0), acc_ids, pa.nulls(n, pa.string()))
    education = np.clip(np.round((np.log(income) - 9.8) * 2.2 + rng.normal(0, 0.8, n)), 0, 4)
    occupation = np.where(age > 66, 4, np.where(age < 23, 0, rng.integers(1, 8, n)))
    emails = pc.binary_join_element_wise(
        pc.utf8_lower(pa.array(first, pa.string())),
        ".",
        pc.utf8_lower(pa.array(last, pa.string())),
        pc.cast(pa.array(np.arange(1, n + 1)), pa.string()),
        "",
    )
    cust = pa.table(
        {
            "customer_id": cid,
            "account_id": acc_col,
            "first_name": pa.array(first, pa.string()),
            "last_name": pa.array(last, pa.string()),
            "email": pc.binary_join_element_wise(emails, "@example.com", ""),
            "phone": _str_ids("+4477", rng.integers(0, 10**8, n), 8),
            "gender": pa.array(np.where(female, "female", "male")),
            "birth_date": pa.array(birth),
            "income": pa.array(income),
            "household_size": pa.array(1 + married.astype(int) + children),
            "children": pa.array(children),
            "marital_status": _take(MARITAL, marital),
            "education": _take(EDUCATION, education.astype(int)),
            "occupation": _take(OCCUPATIONS, occupation),
            "country": _take(tuple(p[0] for p in PLACES), place),
            "region": _take(tuple(p[1] for p in PLACES), place),
            "city": _take(tuple(p[2] for p in PLACES), place),
            "postal_code": pc.binary_join_element_wise(
                _take(tuple(p[3] for p in PLACES), place),
                " ",
                pc.cast(pa.array(rng.integers(1, 99, n)), pa.string()),
                "",
            ),
            "created_at": pa.array(acquired.astype("datetime64[s]")),
            "marketing_consent": pa.array(consent),
            "consent_at": pa.array(
                np.where(consent, acquired + rng.integers(0, 86400 * 30, n), acquired).astype(
                    "datetime64[s]"
                )
            ),
        }
    )
    _write(cust, out / "customers", fmt)
    rows["customers"] = n

    # ---- purchases (Pareto/NBD with Gamma-Gamma spend) ----------------------------------
    say("orders")
    shape = S["rate_shape"][seg]
    rate_day = rng.gamma(shape, S["orders_per_year"][seg] / shape / 365.25)
    lifetime = rng.exponential(S["lifetime_days"][seg]) * 86400
    death = acquired + lifetime.astype(np.int64)
    active_end = np.minimum(death, end_s)
    repeat = rng.poisson(rate_day * (active_end - acquired) / 86400)
    # registered prospects: signed up, browse, never buy
    prospect = rng.random(n) < PROSPECT_SHARE
    n_orders = np.where(prospect, 0, 1 + repeat)
    spend_level = rng.gamma(6.0, S["spend"][seg] / 6.0)
    owner = np.repeat(np.arange(n), n_orders)
    first_flag = np.zeros(len(owner), bool)
    first_flag[(np.cumsum(n_orders) - n_orders)[n_orders > 0]] = True
    t = acquired[owner] + (rng.random(len(owner)) * (active_end - acquired)[owner]).astype(np.int64)
    t = np.where(first_flag, acquired[owner], t)
    t = _occasions(
        rng, t, S["occasion"][seg[owner]], acquired[owner], active_end[owner], first_flag
    )
    t = _time_of_week(rng, t, S["weekend"][seg[owner]], S["evening"][seg[owner]])
    t = np.where(t > end_s, t - 7 * 86400, t)  # a weekend move must not pass the end date
    order_seq = np.argsort(t, kind="stable")
    owner, t = owner[order_seq], t[order_seq]
    n_ord = len(owner)
    oseg = seg[owner]
    lines = 1 + rng.poisson(S["basket"][oseg] - 1)
    n_lines = int(lines.sum())
    line_order = np.repeat(np.arange(n_ord), lines)
    lseg = oseg[line_order]
    cat_w = np.array([s.categories for s in SEGMENTS], float)
    cat = _pick(rng, cat_w, lseg)
    base_price = np.array([4, 25, 120, 35, 15, 12, 20, 18, 30, 22], float)
    price = np.round(
        base_price[cat] * rng.gamma(4.0, 0.25, n_lines) * spend_level[owner[line_order]], 2
    ).clip(min=0.5)
    qty = 1 + rng.poisson(np.where(cat == 0, 1.5, 0.2))
    disc = rng.random(n_lines) < S["discount"][lseg]
    discount = np.where(disc, np.round(price * qty * rng.uniform(0.1, 0.35, n_lines), 2), 0.0)
    ch_w = np.array([s.channels for s in SEGMENTS], float)
    channel = _pick(rng, ch_w, oseg)
    product = cat * 1000 + rng.integers(1, 200, n_lines)
    order_ids = _str_ids("O", np.arange(1, n_ord + 1), 8)
    line_no = np.arange(n_lines) - np.repeat(np.cumsum(lines) - lines, lines) + 1
    orders = pa.table(
        {
            "order_id": order_ids.take(pa.array(line_order)),
            "line_no": pa.array(line_no),
            "customer_id": cid.take(pa.array(owner[line_order])),
            "ordered_at": pa.array(t[line_order].astype("datetime64[s]")),
            "product_id": _str_ids("P", product, 5),
            "category": _take(CATEGORIES, cat),
            "quantity": pa.array(qty),
            "unit_price": pa.array(price),
            "amount": pa.array(np.round(price * qty - discount, 2)),
            "discount": pa.array(discount),
            "currency": pa.array(np.full(n_lines, "EUR", dtype=object), pa.string()),
            "channel": _take(CHANNELS, channel[line_order]),
        }
    )
    _write(orders, out / "orders", fmt)
    rows["orders"] = n_lines

    # ---- events along the buying journey -----------------------------------------------
    say("events")
    device = _pick(rng, np.array([s.devices for s in SEGMENTS], float), seg)
    online = channel != 2
    ev_orders = np.nonzero(online)[0]
    depth = rng.integers(1, len(JOURNEY) + 1, len(ev_orders))
    ev_owner_order = np.repeat(ev_orders, depth)
    step = np.arange(len(ev_owner_order)) - np.repeat(np.cumsum(depth) - depth, depth)
    ev_time = t[ev_owner_order] - (
        depth[np.searchsorted(np.cumsum(depth), np.arange(len(ev_owner_order)), side="right")]
        - step
    ) * rng.integers(60, 3 * 86400, len(ev_owner_order))
    # registered prospects browse part of the journey after signing up
    pros_cust = np.nonzero(prospect)[0]
    pros_depth = rng.integers(1, 4, len(pros_cust))
    pros_owner = np.repeat(pros_cust, pros_depth)
    pros_step = np.arange(len(pros_owner)) - np.repeat(
        np.cumsum(pros_depth) - pros_depth, pros_depth
    )
    pros_at = np.minimum(
        acquired[pros_owner] + pros_step * 86400 + rng.integers(0, 86400 * 20, len(pros_owner)),
        end_s,
    )
    ev_cust = np.concatenate([owner[ev_owner_order], pros_owner])
    ev_time = np.concatenate([ev_time, pros_at])
    step = np.concatenate([step, pros_step])
    ev_app = np.concatenate([channel[ev_owner_order] == 1, np.zeros(len(pros_owner), bool)])
    # anonymous visitors: browse but never buy, tracked by cookie only
    n_pros = n // 5
    pros_time = start_s + (rng.random(n_pros) * span).astype(np.int64)
    types = np.concatenate(
        [
            np.asarray(JOURNEY, object)[step],
            np.asarray(("page_view", "product_view"), object)[rng.integers(0, 2, n_pros)],
        ]
    )
    ev_dev = np.concatenate([device[ev_cust], rng.integers(0, 3, n_pros)])
    os_pick = rng.integers(0, 3, len(ev_dev))
    os_names = np.array([[o for o in (OS_BY_DEVICE[d] * 3)[:3]] for d in DEVICES], object)
    n_ev = len(types)
    events = pa.table(
        {
            "event_id": _str_ids("E", np.arange(1, n_ev + 1), 9),
            "customer_id": pa.concat_arrays(
                [cid.take(pa.array(ev_cust)), pa.nulls(n_pros, pa.string())]
            ),
            "anonymous_id": pa.concat_arrays(
                [pa.nulls(len(ev_cust), pa.string()), _str_ids("anon", np.arange(1, n_pros + 1), 7)]
            ),
            "occurred_at": pa.array(np.concatenate([ev_time, pros_time]).astype("datetime64[s]")),
            "event_type": pa.array(types, pa.string()),
            "channel": pa.array(np.full(n_ev, "web", dtype=object), pa.string()),
            "device_type": _take(DEVICES, ev_dev),
            "os": pa.array(os_names[ev_dev, os_pick], pa.string()),
            "browser": _take(BROWSERS, rng.integers(0, 4, n_ev)),
            "platform": pa.array(
                np.where(
                    np.concatenate([ev_app, np.zeros(n_pros, bool)]),
                    "app",
                    "web",
                )
            ),
        }
    )
    _write(events, out / "events", fmt)
    rows["events"] = n_ev

    # ---- survey responses ----------------------------------------------------------------
    say("responses")
    resp = np.nonzero(rng.random(n) < 0.12)[0]
    k = len(SURVEY_ITEMS)
    r_cust = np.repeat(resp, k)
    r_item = np.tile(np.arange(k), len(resp))
    means = np.array([s.survey for s in SEGMENTS])[seg[r_cust], r_item]
    likert = np.clip(np.round(rng.normal(means, 0.8)), 1, 5)
    responses = pa.table(
        {
            "response_id": _str_ids("R", r_cust + 1, 7),
            "customer_id": cid.take(pa.array(r_cust)),
            "survey_id": pa.array(np.full(len(r_cust), "S2024", dtype=object), pa.string()),
            "item_id": _take(tuple(i[0] for i in SURVEY_ITEMS), r_item),
            "item_text": _take(tuple(i[2] for i in SURVEY_ITEMS), r_item),
            "construct": _take(tuple(i[1] for i in SURVEY_ITEMS), r_item),
            "value_num": pa.array(likert),
            "answered_at": pa.array(
                (end_s - rng.integers(0, 86400 * 60, len(r_cust))).astype("datetime64[s]")
            ),
        }
    )
    _write(responses, out / "responses", fmt)
    rows["responses"] = len(r_cust)

    # ---- feedback ------------------------------------------------------------------------
    say("feedback")
    writers = np.nonzero(rng.random(n) < S["review_rate"][seg])[0]
    theme_names = tuple(THEMES)
    theme = _pick(rng, np.array([s.themes for s in SEGMENTS], float), seg[writers])
    variant = rng.integers(0, 3, len(writers))
    texts = np.array([[THEMES[th][v] for v in range(3)] for th in theme_names], object)
    rating = np.where(
        np.asarray(theme_names, object)[theme] == "praise",
        rng.integers(4, 6, len(writers)),
        rng.integers(1, 4, len(writers)),
    )
    feedback = pa.table(
        {
            "feedback_id": _str_ids("F", np.arange(1, len(writers) + 1), 7),
            "customer_id": cid.take(pa.array(writers)),
            "created_at": pa.array(
                (acquired[writers] + rng.integers(86400, 86400 * 120, len(writers)))
                .clip(max=end_s)
                .astype("datetime64[s]")
            ),
            "channel": pa.array(np.full(len(writers), "review", dtype=object), pa.string()),
            "rating": pa.array(rating),
            "text": pa.array(texts[theme, variant], pa.string()),
            "language": pa.array(np.full(len(writers), "en", dtype=object), pa.string()),
        }
    )
    _write(feedback, out / "feedback", fmt)
    rows["feedback"] = len(writers)

    # ---- B2B accounts --------------------------------------------------------------------
    say("accounts")
    a = np.arange(1, n_acc + 1)
    employees = np.round(np.exp(rng.normal(3.0, 1.3, n_acc))).astype(int) + 1
    stage = rng.choice(4, size=n_acc, p=[0.3, 0.2, 0.35, 0.15])
    acc_created = start_s + (rng.random(n_acc) * span * 0.8).astype(np.int64)
    accounts = pa.table(
        {
            "account_id": _str_ids("A", a, 6),
            "name": pc.binary_join_element_wise(
                _take(LAST_NAMES, rng.integers(0, len(LAST_NAMES), n_acc)),
                " ",
                _take(("Ltd", "GmbH", "SARL", "BV", "SL"), rng.integers(0, 5, n_acc)),
                "",
            ),
            "industry": _take(INDUSTRIES, rng.integers(0, len(INDUSTRIES), n_acc)),
            "employees": pa.array(employees),
            "annual_revenue": pa.array(np.round(employees * rng.gamma(4, 25000, n_acc), -3)),
            "country": _take(
                tuple(p[0] for p in PLACES),
                rng.choice(len(PLACES), n_acc, p=place_w / place_w.sum()),
            ),
            "created_at": pa.array(acc_created.astype("datetime64[s]")),
            "origin": _take(
                ("organic_search", "paid_search", "referral", "email", "event"),
                rng.integers(0, 5, n_acc),
            ),
            "stage": _take(("lead", "qualified", "won", "lost"), stage),
            "stage_at": pa.array(
                (acc_created + rng.integers(0, 86400 * 90, n_acc)).astype("datetime64[s]")
            ),
        }
    )
    _write(accounts, out / "accounts", fmt)
    rows["accounts"] = n_acc

    # ---- truth ---------------------------------------------------------------------------
    say("truth")
    truth = pa.table(
        {
            "customer_id": cid,
            "segment": _take(tuple(s.name for s in SEGMENTS), seg),
            "purchase_rate_per_year": pa.array(rate_day * 365.25),
            "lifetime_days": pa.array(lifetime / 86400),
            "alive_at_end": pa.array(death > end_s),
            "spend_level": pa.array(spend_level),
            "repeat_orders": pa.array(np.where(prospect, 0, repeat)),
            "prospect": pa.array(prospect),
        }
    )
    pq.write_table(truth, out / "truth" / "customers_truth.parquet")
    (out / "truth" / "segments.json").write_text(
        json.dumps(
            {
                "seed": seed,
                "customers": n,
                "start": str(start),
                "end": str(end),
                "segments": [asdict(s) for s in SEGMENTS],
                "categories": list(CATEGORIES),
                "channels": list(CHANNELS),
                "devices": list(DEVICES),
                "survey_items": [list(i) for i in SURVEY_ITEMS],
                "themes": list(THEMES),
            },
            indent=1,
        )
    )
    _write_config(out, fmt)
    return SynthResult(str(out), rows, round(time.perf_counter() - t0, 2))


OCCASION_ODDS = (0.3, 0.45, 0.15, 0.10)  # Black Friday, Christmas, Valentine's, back to school


def _occasion_windows(year: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last day (days since 1970-01-01) of each occasion in `year`, shape (4, n):
    Black Friday to Cyber Monday (the Friday after the fourth Thursday of November), 1-23
    December, 7-14 February, 15 August - 4 September. Each lies inside the traits' default
    window of the same name, so the occasion shares see what was planted."""
    months = (np.asarray(year) - 1970) * 12

    def first_of(month: int) -> np.ndarray:
        return (months + month - 1).astype("datetime64[M]").astype("datetime64[D]").astype(int)

    nov1 = first_of(11)
    thursday = nov1 + (3 - (nov1 + 3) % 7) % 7 + 21  # the fourth; 1970-01-01 was a Thursday
    first = np.stack([thursday + 1, first_of(12), first_of(2) + 6, first_of(8) + 14])
    days = np.array([4, 23, 8, 21])[:, None]
    return first, first + days - 1


def _occasions(
    rng: np.random.Generator,
    t: np.ndarray,
    share: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    first: np.ndarray,
) -> np.ndarray:
    """Move a segment-dependent share of the orders (not the first ones, flagged `first`)
    into a calendar occasion (Black Friday weekend, Christmas season, Valentine's week, back
    to school): into its nearest occurrence (the year before, of, or after the order) that
    lies in the order's [lo, hi] (the customer's active time)."""
    move = (rng.random(len(t)) < share) & ~first
    which = rng.choice(4, size=len(t), p=list(OCCASION_ODDS))
    pick = rng.integers(0, 1 << 30, len(t))
    second = rng.integers(0, 86400, len(t))
    year = t.astype("datetime64[s]").astype("datetime64[Y]").astype(int) + 1970
    out, gap = t.copy(), np.full(len(t), np.inf)
    rows = np.arange(len(t))
    for dy in (0, -1, 1):
        a, b = _occasion_windows(year + dy)
        a, b = a[which, rows], b[which, rows]
        new = (a + pick % (b - a + 1)) * 86400 + second
        ok = move & (new >= lo) & (new <= hi) & (np.abs(new - t) < gap)
        out = np.where(ok, new, out)
        gap = np.where(ok, np.abs(new - t), gap)
    return out


def _time_of_week(
    rng: np.random.Generator, t: np.ndarray, weekend: np.ndarray, evening: np.ndarray
) -> np.ndarray:
    """Set the hour (evening or daytime) and move weekday orders to the weekend by share:
    to the weekend after, or for an order in an occasion when that leaves the occasion, the
    weekend before (every occasion window holds a weekend)."""
    day = t // 86400
    dow = (day + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    to_weekend = (rng.random(len(t)) < weekend) & (dow < 5)
    sunday = rng.integers(0, 2, len(t))
    after = day + (5 - dow) + sunday
    before = day - dow - 2 + sunday
    year = day.astype("datetime64[D]").astype("datetime64[Y]").astype(int) + 1970
    a, b = _occasion_windows(year)
    inside = (day >= a) & (day <= b)
    leaves = (inside & (after > b)).any(axis=0)
    day = np.where(to_weekend, np.where(leaves, before, after), day)
    eve = rng.random(len(t)) < evening
    hour = np.where(eve, rng.integers(18, 23, len(t)), rng.integers(8, 18, len(t)))
    return day * 86400 + hour * 3600 + rng.integers(0, 3600, len(t))


def _write_config(out: Path, fmt: str) -> None:
    ext = "parquet" if fmt == "parquet" else "csv"
    lines = [
        "# personae.toml written by `personae synth`: the mapping is exact.",
        "",
        "[store]",
        'path = ".personae/personae.duckdb"',
        "",
    ]
    for table in ("customers", "orders", "events", "responses", "feedback", "accounts"):
        lines += [f"[sources.{table}]", f'table = "{table}"', f'path = "{table}.{ext}"']
        lines.append("")
    (out / "personae.toml").write_text("\n".join(lines))
