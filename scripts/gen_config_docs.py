"""Write docs/configuration.md from the pydantic models in personae.config: every setting with
its type, default and description. `--check` fails when the page is out of date."""

from __future__ import annotations

import sys
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from personae.config import SECTIONS

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "configuration.md"

INTRO = """# Configuration: personae.toml

One `personae.toml` per project, validated when it is read: an unknown setting is an error that
names the file and the setting and suggests the closest valid one. `personae init` writes it
with comments; every setting has a default that works on the demo data.

```toml
[store]
path = ".personae/personae.duckdb"

[sources.retail]
table = "orders"
path = "data/online_retail.csv.gz"
encoding = "latin-1"
cancel_pattern = "^C"

[sources.retail.columns]
InvoiceNo = "order_id"
InvoiceDate = "ordered_at"
CustomerID = "customer_id"

[sources.retail.date_formats]
InvoiceDate = "%m/%d/%Y %H:%M"
```

Columns named exactly like a canonical column (see `personae tables`) map to it without a line
in `columns`. This page is generated from the settings' declarations by
`scripts/gen_config_docs.py`; a test fails when it is out of date.
"""


def _type(model: type[BaseModel], name: str) -> str:
    ann = model.model_fields[name].annotation
    if get_origin(ann) is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in get_args(ann))
    args = [a for a in get_args(ann) if a is not type(None)]
    if get_origin(ann) in (UnionType, Union) and len(args) == 1:
        return _name(args[0]) + " (optional)"
    return _name(ann)


def _name(ann: Any) -> str:
    if get_origin(ann) is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in get_args(ann))
    if get_origin(ann) in (dict, list):
        return f"{get_origin(ann).__name__} of " + ", ".join(_name(a) for a in get_args(ann))
    return getattr(ann, "__name__", str(ann)).replace("personae.config.", "")


def _default(model: type[BaseModel], name: str) -> Any:
    field = model.model_fields[name]
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        return f"`{field.default_factory()!r}`"  # type: ignore[call-arg]
    return f"`{field.default!r}`"


def section(title: str, model: type[BaseModel]) -> str:
    lines = [f"## {title}", "", "| setting | type | default | what it does |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        desc = (field.description or "").replace("|", "\\|")
        lines.append(f"| `{name}` | {_type(model, name)} | {_default(model, name)} | {desc} |")
    return "\n".join(lines) + "\n"


def render() -> str:
    return "\n".join(
        [
            INTRO,
            *(section(title, model) for title, model in SECTIONS),
        ]
    )


def main(check: bool) -> int:
    text = render()
    if check:
        if not PAGE.exists() or PAGE.read_text() != text:
            print("docs/configuration.md is out of date: run python scripts/gen_config_docs.py")
            return 1
        return 0
    PAGE.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv))
