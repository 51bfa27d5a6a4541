"""`personae synth`: realistic multi-table customer data with planted ground truth.

Everything is vectorised with numpy and written with pyarrow, a chunk of customers at a time
(each chunk's rows in every table, appended to the same files), so memory is bounded by the
chunk and time grows linearly with the number of customers. The truth (segment, purchase rate,
lifetime, spend level of every customer) goes to `truth/`, apart from the data a user would
have.

Purchases follow the Pareto/NBD story (Schmittlein, Morrison & Colombo 1987): each customer
buys as a Poisson process with a Gamma-distributed rate while alive, and dies after an
exponential lifetime. Spend per unit follows a Gamma with a customer-level scale
(Fader, Hardie & Lee 2005's Gamma-Gamma).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
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


CHUNK = 250_000
"""Customers per chunk. Chunk k draws from its own random stream, keyed by k, so the chunk size
is part of what a seed means: fixed here, not chosen by the machine (tests pass a small one)."""

PROGRESS_STEPS = 7
"""How often `generate` calls `progress`: once per seventh of the customers written (the CLI's
bar counts seven steps)."""


@dataclass
class SynthResult:
    """Where the files went and how many rows each has."""

    out_dir: str
    rows: dict[str, int]
    seconds: float


@dataclass
class _Ids:
    """What the chunks written so far used up: where the next chunk's ids start."""

    orders: int = 0
    events: int = 0
    feedback: int = 0
    accounts: int = 0


class _Sink:
    """One output file that every chunk appends to: CSV with one header, or Parquet with a row
    group per chunk. Later chunks are cast to the first chunk's schema, so a chunk where a
    column happens to be empty or all null cannot change the file's types. The file is
    written under a hidden partial name and takes its own name only when every chunk is in,
    so a run that stops midway leaves no short file that ingest would read as whole."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.final = path
        self.path = path.with_name(f".{path.name}.partial")
        self.fmt = fmt
        self.schema: pa.Schema | None = None
        self.writer: pq.ParquetWriter | pacsv.CSVWriter | None = None
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if self.schema is None:
            self.schema = table.schema
            if self.fmt == "parquet":
                self.writer = pq.ParquetWriter(self.path, table.schema)
            else:
                options = pacsv.WriteOptions(quoting_style="needed")
                self.writer = pacsv.CSVWriter(self.path, table.schema, write_options=options)
        else:
            table = table.cast(self.schema)
        assert self.writer is not None
        self.writer.write_table(table)
        self.rows += table.num_rows

    def close(self, complete: bool) -> None:
        """Close the file: under its own name when `complete`, else remove it."""
        if self.writer is not None:
            self.writer.close()
        if complete and self.writer is not None:
            os.replace(self.path, self.final)
        else:
            self.path.unlink(missing_ok=True)


def _str_ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    s = pc.utf8_lpad(pc.cast(pa.array(numbers, pa.int64()), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, s, "")


def _pick(rng: np.random.Generator, probs: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Draw one category per row from the row's group's probability vector: one search in
    the groups' cumulative probabilities laid end to end (group g shifted by 2g), which is
    much faster than comparing every row with its group's whole vector."""
    k = probs.shape[1]
    cum = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
    shift = 2.0 * np.arange(len(probs))
    u = rng.random(len(groups))
    found = np.searchsorted((cum + shift[:, None]).ravel(), u + shift[groups], side="left")
    return (found - k * groups).clip(max=k - 1)


def _take(values: tuple[str, ...], idx: np.ndarray) -> pa.Array:
    """`values[idx]` as an Arrow string array (an Arrow take: no Python objects per row)."""
    return pa.array(values, pa.string()).take(pa.array(idx, pa.int64()))


def _strings(value: str, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, pa.string()), n)


TABLES = ("customers", "orders", "events", "responses", "feedback", "accounts")


def generate(
    out_dir: str | Path,
    customers: int = 5000,
    seed: int = 42,
    start: date = date(2022, 1, 1),
    end: date = date(2024, 12, 31),
    fmt: str = "csv",
    progress: Callable[[str], None] | None = None,
    chunk: int = CHUNK,
) -> SynthResult:
    """Write customers, orders, events, responses, feedback and accounts to `out_dir`, the
    planted truth to `out_dir/truth/`, and a ready personae.toml.

    Customers are made and written `chunk` at a time, each chunk from its own random stream
    (the seed's child keyed by the chunk's index), so memory is bounded by the chunk, not by
    `customers`, and the files depend only on the seed, the count and the chunk size. Ids run
    on across chunks; accounts group customers of one chunk."""
    t0 = time.perf_counter()
    if customers < 1:
        raise PersonaeError(f"--customers must be at least 1 (got {customers}).")
    if chunk < 1:
        raise PersonaeError(f"The chunk size must be at least 1 (got {chunk}).")
    if end <= start:
        raise PersonaeError(f"The end date {end} must be after the start date {start}.")
    out = Path(out_dir)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _msg: None)
    ext = ".parquet" if fmt == "parquet" else ".csv"
    sinks = {name: _Sink(out / f"{name}{ext}", fmt) for name in TABLES}
    sinks["truth"] = _Sink(out / "truth" / "customers_truth.parquet", "parquet")
    ids, told = _Ids(), 0

    def write(tables: dict[str, pa.Table]) -> None:
        for name, table in tables.items():
            sinks[name].write(table)

    # chunk k is written on a second thread while chunk k + 1 is made: Arrow's writers
    # release the GIL, and at most two chunks are in memory at once
    pending: Future[None] | None = None
    complete = False
    try:
        with ThreadPoolExecutor(1) as writer:
            for k, lo in enumerate(range(0, customers, chunk)):
                hi = min(lo + chunk, customers)
                main, occasions = np.random.SeedSequence(seed, spawn_key=(k,)).spawn(2)
                rngs = np.random.default_rng(main), np.random.default_rng(occasions)
                tables = _chunk(*rngs, lo, hi, start, end, ids)
                if pending is not None:
                    pending.result()
                pending = writer.submit(write, tables)
                del tables
                while told < PROGRESS_STEPS * lo // customers:  # chunks written so far
                    say(f"{lo:,} of {customers:,} customers")
                    told += 1
            if pending is not None:
                pending.result()
        complete = True
    finally:
        for sink in sinks.values():
            sink.close(complete)
    while told < PROGRESS_STEPS:
        say(f"{customers:,} of {customers:,} customers")
        told += 1
    (out / "truth" / "segments.json").write_text(
        json.dumps(
            {
                "seed": seed,
                "customers": customers,
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
    rows = {name: sinks[name].rows for name in TABLES}
    return SynthResult(str(out), rows, round(time.perf_counter() - t0, 2))


_S = {
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
}  # each segment parameter as an array over segments, to index by a segment code


def _chunk(
    rng: np.random.Generator,
    occ_rng: np.random.Generator,
    lo: int,
    hi: int,
    start: date,
    end: date,
    ids: _Ids,
) -> dict[str, pa.Table]:
    """All rows of customers number `lo + 1` to `hi`: their own rows in every table, the
    anonymous visitors numbered `lo // 5 + 1` to `hi // 5` (one per five customers in all),
    and the accounts they belong to. Advances `ids` past the ids it used."""
    S = _S
    n = hi - lo
    number = np.arange(lo + 1, hi + 1)  # customer numbers, global
    seg = rng.choice(len(SEGMENTS), size=n, p=np.array([s.share for s in SEGMENTS]))

    # ---- customers -----------------------------------------------------------------------
    start_s = np.datetime64(start, "s").astype(np.int64)
    end_s = np.datetime64(end, "s").astype(np.int64) + 86399
    span = end_s - start_s
    acquired = start_s + (rng.random(n) * (span - 30 * 86400)).astype(np.int64)
    # occasion buyers also come in at occasions: their first order is an occasion order too
    # (drawn from a second stream, so every other draw stays what it was)
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
    first = _take(FIRST_NAMES_F + FIRST_NAMES_M, np.where(female, first_idx, 16 + first_idx))
    last = _take(LAST_NAMES, rng.integers(0, len(LAST_NAMES), n))
    cid = _str_ids("C", number, 7)
    consent = rng.random(n) < S["consent"][seg]
    # B2B customers share accounts, about three to an account, within their chunk; the first
    # chunk always has an account, so the accounts file is never empty
    has_b2b = rng.random(n) < S["b2b"][seg]
    n_acc = -(-int(has_b2b.sum()) // 3)
    if lo == 0:
        n_acc = max(1, n_acc)
    account_of = ids.accounts + 1 + rng.integers(0, max(n_acc, 1), n)
    acc_col = pc.if_else(pa.array(has_b2b), _str_ids("A", account_of, 6), pa.nulls(n, pa.string()))
    education = np.clip(np.round((np.log(income) - 9.8) * 2.2 + rng.normal(0, 0.8, n)), 0, 4)
    occupation = np.where(age > 66, 4, np.where(age < 23, 0, rng.integers(1, 8, n)))
    emails = pc.binary_join_element_wise(
        pc.utf8_lower(first),
        ".",
        pc.utf8_lower(last),
        pc.cast(pa.array(number), pa.string()),
        "",
    )
    tables: dict[str, pa.Table] = {}
    tables["customers"] = pa.table(
        {
            "customer_id": cid,
            "account_id": acc_col,
            "first_name": first,
            "last_name": last,
            "email": pc.binary_join_element_wise(emails, "@example.com", ""),
            "phone": _str_ids("+4477", rng.integers(0, 10**8, n), 8),
            "gender": _take(("male", "female"), female.astype(np.int64)),
            "birth_date": pa.array(birth),
            "income": pa.array(income),
            "household_size": pa.array(1 + married.astype(np.int64) + children),
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

    # ---- purchases (Pareto/NBD with Gamma-Gamma spend) ----------------------------------
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
    order_seq = np.argsort(t, kind="stable")  # order ids follow time within the chunk
    owner, t = owner[order_seq], t[order_seq]
    del first_flag, order_seq
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
    order_ids = _str_ids("O", np.arange(ids.orders + 1, ids.orders + n_ord + 1), 8)
    ids.orders += n_ord
    line_no = np.arange(n_lines) - np.repeat(np.cumsum(lines) - lines, lines) + 1
    tables["orders"] = pa.table(
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
            "currency": _strings("EUR", n_lines),
            "channel": _take(CHANNELS, channel[line_order]),
        }
    )
    del line_order, lseg, cat, price, qty, disc, discount, product, order_ids, line_no

    # ---- events along the buying journey -----------------------------------------------
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
    # anonymous visitors: browse but never buy, tracked by cookie only; one per five
    # customers over the whole file, numbered on from the previous chunk's
    anon_lo, anon_hi = lo // 5, hi // 5
    n_anon = anon_hi - anon_lo
    anon_time = start_s + (rng.random(n_anon) * span).astype(np.int64)
    # journey steps; an anonymous visitor views a page or a product (steps 0 and 2)
    types = np.concatenate([step, 2 * rng.integers(0, 2, n_anon)])
    ev_dev = np.concatenate([device[ev_cust], rng.integers(0, 3, n_anon)])
    os_pick = rng.integers(0, 3, len(ev_dev))
    os_names = tuple(o for d in DEVICES for o in (OS_BY_DEVICE[d] * 3)[:3])
    n_ev = len(types)
    tables["events"] = pa.table(
        {
            "event_id": _str_ids("E", np.arange(ids.events + 1, ids.events + n_ev + 1), 9),
            "customer_id": pa.concat_arrays(
                [cid.take(pa.array(ev_cust)), pa.nulls(n_anon, pa.string())]
            ),
            "anonymous_id": pa.concat_arrays(
                [
                    pa.nulls(len(ev_cust), pa.string()),
                    _str_ids("anon", np.arange(anon_lo + 1, anon_hi + 1), 7),
                ]
            ),
            "occurred_at": pa.array(np.concatenate([ev_time, anon_time]).astype("datetime64[s]")),
            "event_type": _take(JOURNEY, types),
            "channel": _strings("web", n_ev),
            "device_type": _take(DEVICES, ev_dev),
            "os": _take(os_names, 3 * ev_dev + os_pick),
            "browser": _take(BROWSERS, rng.integers(0, 4, n_ev)),
            "platform": _take(
                ("web", "app"), np.concatenate([ev_app, np.zeros(n_anon, bool)]).astype(np.int64)
            ),
        }
    )
    ids.events += n_ev
    del owner, t, channel, ev_cust, ev_time, step, ev_app, types, ev_dev, os_pick

    # ---- survey responses: about 12% of all customers answer every item -------------------
    resp = np.nonzero(rng.random(n) < 0.12)[0]
    k = len(SURVEY_ITEMS)
    r_cust = np.repeat(resp, k)
    r_item = np.tile(np.arange(k), len(resp))
    means = np.array([s.survey for s in SEGMENTS])[seg[r_cust], r_item]
    likert = np.clip(np.round(rng.normal(means, 0.8)), 1, 5)
    tables["responses"] = pa.table(
        {
            "response_id": _str_ids("R", number[r_cust], 7),
            "customer_id": cid.take(pa.array(r_cust)),
            "survey_id": _strings("S2024", len(r_cust)),
            "item_id": _take(tuple(i[0] for i in SURVEY_ITEMS), r_item),
            "item_text": _take(tuple(i[2] for i in SURVEY_ITEMS), r_item),
            "construct": _take(tuple(i[1] for i in SURVEY_ITEMS), r_item),
            "value_num": pa.array(likert),
            "answered_at": pa.array(
                (end_s - rng.integers(0, 86400 * 60, len(r_cust))).astype("datetime64[s]")
            ),
        }
    )

    # ---- feedback ------------------------------------------------------------------------
    writers = np.nonzero(rng.random(n) < S["review_rate"][seg])[0]
    theme_names = tuple(THEMES)
    theme = _pick(rng, np.array([s.themes for s in SEGMENTS], float), seg[writers])
    variant = rng.integers(0, 3, len(writers))
    texts = tuple(THEMES[th][v] for th in theme_names for v in range(3))
    rating = np.where(
        theme == theme_names.index("praise"),
        rng.integers(4, 6, len(writers)),
        rng.integers(1, 4, len(writers)),
    )
    n_fb = len(writers)
    tables["feedback"] = pa.table(
        {
            "feedback_id": _str_ids("F", np.arange(ids.feedback + 1, ids.feedback + n_fb + 1), 7),
            "customer_id": cid.take(pa.array(writers)),
            "created_at": pa.array(
                (acquired[writers] + rng.integers(86400, 86400 * 120, n_fb))
                .clip(max=end_s)
                .astype("datetime64[s]")
            ),
            "channel": _strings("review", n_fb),
            "rating": pa.array(rating, pa.int64()),
            "text": _take(texts, 3 * theme + variant),
            "language": _strings("en", n_fb),
        }
    )
    ids.feedback += n_fb

    # ---- B2B accounts of this chunk's customers ------------------------------------------
    a = np.arange(ids.accounts + 1, ids.accounts + n_acc + 1)
    ids.accounts += n_acc
    employees = np.round(np.exp(rng.normal(3.0, 1.3, n_acc))).astype(np.int64) + 1
    stage = rng.choice(4, size=n_acc, p=[0.3, 0.2, 0.35, 0.15])
    acc_created = start_s + (rng.random(n_acc) * span * 0.8).astype(np.int64)
    tables["accounts"] = pa.table(
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

    # ---- truth ---------------------------------------------------------------------------
    tables["truth"] = pa.table(
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
    return tables


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


def _year_of(day: np.ndarray) -> np.ndarray:
    """The calendar year of each day (days since 1970-01-01): a search among the starts of
    the few years in range, several times faster than a date conversion per row."""
    if len(day) == 0:
        return np.zeros(0, np.int64)
    lo, hi = (
        int(np.datetime64(int(d), "D").astype("datetime64[Y]").astype(np.int64)) + 1970
        for d in (day.min(), day.max())
    )
    starts = np.arange(lo - 1970, hi - 1970 + 1).astype("datetime64[Y]").astype("datetime64[D]")
    return lo + np.searchsorted(starts.astype(np.int64), day, side="right") - 1


def _windows_of(year: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`_occasion_windows(year)` for many rows: worked out once per distinct year."""
    if len(year) == 0:
        return np.zeros((4, 0), np.int64), np.zeros((4, 0), np.int64)
    y0 = int(year.min())
    first, last = _occasion_windows(np.arange(y0, int(year.max()) + 1))
    return first[:, year - y0], last[:, year - y0]


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
    year = _year_of(t // 86400)
    out, gap = t.copy(), np.full(len(t), np.inf)
    for dy in (0, -1, 1):
        a, b = _windows_of(year + dy)
        a, b = a[which, np.arange(len(t))], b[which, np.arange(len(t))]
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
    a, b = _windows_of(_year_of(day))
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
