"""Deterministic generator of realistic bulkops CSV files, for benchmarks and load tests.

Every entity of CONTRACT.md section 1 is written in template column order:

==========  =============================================
warehouses  code,name
products    sku,name,description,category,price
inventory   sku,warehouse_code,quantity,reason,notes
pricing     sku,price_tier,price,min_quantity
customers   email,name,company,price_tier
==========  =============================================

Keys of data row ``i`` (0-based) depend only on ``i`` and the key arguments
(``sku_prefix``, ``warehouses``), never on ``seed`` or ``variant``:

* warehouses: ``WH-{i:03d}``
* products: ``{sku_prefix}-{i:07d}``
* inventory: sku index ``i // warehouses`` and warehouse ``WH-{i % warehouses:03d}``,
  so ``rows`` inventory rows need ``ceil(rows / warehouses)`` products and ``warehouses``
  warehouses (see :func:`references_needed`).
* pricing: sku index ``i // 12``; tier ``PRICE_TIERS[(i % 12) // 3]``; min_quantity
  ``(1, 10, 100)[i % 3]`` -- twelve price rows per product.
* customers: ``user{i}@example{i % 50}.com``, with a mixed-case spelling on some rows (the
  same rows whatever the seed or variant).

``variant`` changes every non-key value that carries data (names, prices, quantities) in a
deterministic way, so that ``variant=1`` is an "update" of ``variant=0`` on the same keys.

``invalid_every=N`` makes every N-th data row (rows N, 2N, ...) invalid, cycling through
the kinds of :data:`INVALID_KINDS` that apply to the entity.

Command line::

    python -m bench.generate ENTITY ROWS OUT [--seed S] [--invalid-every N] [--variant V]
        [--sku-prefix P] [--warehouses W] [--keys-only]
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "COLUMNS",
    "ENTITIES",
    "INVALID_KINDS",
    "KEY_COLUMNS",
    "PRICE_TIERS",
    "keys_only",
    "main",
    "references_needed",
    "write_file",
]

Row = list[str]

COLUMNS: dict[str, tuple[str, ...]] = {
    "warehouses": ("code", "name"),
    "products": ("sku", "name", "description", "category", "price"),
    "inventory": ("sku", "warehouse_code", "quantity", "reason", "notes"),
    "pricing": ("sku", "price_tier", "price", "min_quantity"),
    "customers": ("email", "name", "company", "price_tier"),
}
KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "warehouses": ("code",),
    "products": ("sku",),
    "inventory": ("sku", "warehouse_code"),
    "pricing": ("sku", "price_tier", "min_quantity"),
    "customers": ("email",),
}
ENTITIES: tuple[str, ...] = tuple(COLUMNS)

PRICE_TIERS: tuple[str, ...] = ("standard", "silver", "gold", "wholesale")
_MIN_QUANTITIES: tuple[str, ...] = ("1", "10", "100")
_PRICING_PER_SKU = len(PRICE_TIERS) * len(_MIN_QUANTITIES)

#: Kinds of invalid rows per entity, in cycle order.
INVALID_KINDS: dict[str, tuple[str, ...]] = {
    "warehouses": ("empty_name", "long_name", "control_char"),
    "products": ("decimal_comma", "empty_name", "negative", "long_name", "control_char"),
    "inventory": ("decimal_comma", "empty_quantity", "negative", "unknown_warehouse",
                  "unknown_sku"),
    "pricing": ("decimal_comma", "empty_price", "negative", "zero_min_quantity", "unknown_sku"),
    "customers": ("bad_email", "empty_name", "long_name", "bad_email", "control_char"),
}

_BATCH = 10_000
_LONG_NAME = ("Text pasted into the name field by mistake, far over the limit. " * 5)[:300]

_BRANDS = (
    "Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli", "Vandelay",
    "Müller", "Nordwind", "Soylent", "Tyrell", "Cyberdyne", "Wonka", "Oceanic", "Zenith",
)
_ADJECTIVES = (
    "Heavy-Duty", "Compact", "Ergonomic", "Wireless", "Stainless", "Premium", "Basic",
    "Portable", "Industrial", "Smart", "Rugged", "Slim", "Deluxe", "Eco", "Pro", "Mini",
    "Classic", "Modular", "Adjustable", "Reinforced", "Foldable", "Insulated", "Quiet",
    "Universal", "Professional", "Lightweight", "Waterproof", "Anti-Static", "Magnetic",
    "Cordless", "Digital", "Precision",
)
_NOUNS = (
    "Monitor", "Drill", "Hammer", "Widget", "Cable", "Keyboard", "Chair", "Desk Lamp",
    "Screwdriver Set", "Toolbox", "Ladder", "Shelf", "Pallet Jack", "Label Printer",
    "Headset", "Extension Cord", "Safety Glove", "Hard Hat", "Tape Measure", "Wrench",
    "Soldering Iron", "Power Strip", "Storage Bin", "Hand Truck", "Work Bench",
    "Barcode Scanner", "Fan", "Heater", "Kettle", "Router", "Webcam", "Docking Station",
)
_CATEGORIES = (
    "Electronics", "Tools", "Office", "Furniture", "Safety", "Storage", "Networking",
    "Kitchen", "Lighting", "Cleaning",
)
_USES = (
    "workshops", "offices", "warehouses", "home use", "construction sites", "laboratories",
    "retail", "schools",
)
_FEATURES = (
    "2-year warranty", "CE certified", "includes mounting kit", "RoHS compliant",
    "tool-free assembly", "spare parts available", 'fits 19" racks', "recycled packaging",
)
_REASONS = ("", "initial count", "restock", "cycle count", "damaged", "return", "transfer",
            "correction")
_NOTES = (
    "", "", "", "checked by night shift", 'pallet marked "fragile"', "bin A-12, top shelf",
    "counted twice, matches", "see ticket #4411; supplier notified", "Zählung bestätigt",
)
_CITIES = (
    "Berlin", "Hamburg", "München", "Köln", "Frankfurt", "Stuttgart", "Leipzig", "Dortmund",
    "Essen", "Bremen", "Dresden", "Hannover", "Nürnberg", "Duisburg", "Bochum", "Wuppertal",
)
_SITE_KINDS = ("Distribution Center", "Warehouse", "Depot", "Fulfilment Hub",
               "Cross-Dock", "Cold Store", "Returns Center", "Overflow Storage")
_FIRST = (
    "Anna", "Ben", "Clara", "David", "Eva", "Felix", "Greta", "Hugo", "Ida", "Jonas", "Karla",
    "Lukas", "Mia", "Noah", "Olivia", "Paul", "Renée", "Sören", "Tara", "Ümit", "Vera",
    "William", "Xenia", "Yusuf", "Zoë", "Chloé", "José", "Mary-Ann", "O'Brien", "Li", "Amir",
    "Nadia",
)
_LAST = (
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
    "Schulz", "Hoffmann", "Koch", "Richter", "Klein", "Wolf", "Schröder", "Neumann",
    "O'Connor", "García", "Rossi", "Novak", "Kowalski", "Smith", "Johnson", "Nguyen",
    "Dubois", "Jansen", "Larsen", "Silva", "Yılmaz", "Papadopoulos", "Kim", "Tanaka",
)
_COMPANIES = (
    "", "Acme Corp", "Müller & Söhne GmbH", "Globex, Inc.", 'The "Best" Supplies Ltd',
    "Nordwind Logistik AG", "Initech LLC", "Vandelay Industries", "Smith, Jones & Partners",
    "Oceanic Trading", "Zenith Retail SE", "Wonka Confectionery", "Hooli", "Cyberdyne Systems",
    "Tyrell Corp.", "Umbrella Pharma",
)
_CUSTOMER_TIERS = ("standard", "standard", "standard", "", "silver", "gold", "wholesale",
                   "Standard")
_BAD_EMAILS = ("user{i}.example.com", "user{i}@", "user {i}@example.com", "user{i}@example{d}..com",
               "user{i}@@example{d}.com", "user{i}@example{d}")


@dataclass(frozen=True)
class _Ctx:
    rng: random.Random
    sku_prefix: str
    variant: int
    warehouses: int
    salt: int


def _money(cents: int) -> str:
    """Format integer cents as a decimal string with exactly two places."""
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100}.{cents % 100:02d}"


def _sku(prefix: str, index: int) -> str:
    return f"{prefix}-{index:07d}"


def _warehouse_code(index: int) -> str:
    return f"WH-{index:03d}"


def _email(i: int) -> str:
    # Mixed case on some rows, fixed by i (so a variant keeps the same spelling).
    if i % 7 == 3:
        return f"User{i}@Example{i % 50}.com"
    if i % 11 == 5:
        return f"USER{i}@EXAMPLE{i % 50}.COM"
    return f"user{i}@example{i % 50}.com"


# --- keys -------------------------------------------------------------------------------

def _key(entity: str, i: int, sku_prefix: str, warehouses: int) -> Row:
    if entity == "warehouses":
        return [_warehouse_code(i)]
    if entity == "products":
        return [_sku(sku_prefix, i)]
    if entity == "inventory":
        return [_sku(sku_prefix, i // warehouses), _warehouse_code(i % warehouses)]
    if entity == "pricing":
        combo = i % _PRICING_PER_SKU
        return [
            _sku(sku_prefix, i // _PRICING_PER_SKU),
            PRICE_TIERS[combo // len(_MIN_QUANTITIES)],
            _MIN_QUANTITIES[combo % len(_MIN_QUANTITIES)],
        ]
    if entity == "customers":
        return [_email(i)]
    raise ValueError(f"unknown entity {entity!r}; expected one of {', '.join(ENTITIES)}")


# --- full rows (one batch at a time; hot loops kept free of per-row calls) ---------------

def _warehouse_rows(start: int, stop: int, ctx: _Ctx) -> list[Row]:
    bits = ctx.rng.getrandbits
    v = ctx.variant
    n_city, n_kind = len(_CITIES), len(_SITE_KINDS)
    out: list[Row] = []
    for i in range(start, stop):
        r = bits(32)
        city = _CITIES[(r + v) % n_city]
        kind = _SITE_KINDS[((r >> 8) + v) % n_kind]
        if (r >> 16) & 3 == 0:
            name = f"{city} {kind}, Building {(r >> 18) % 9 + 1}"
        else:
            name = f"{city} {kind} {i}"
        out.append([f"WH-{i:03d}", name])
    return out


def _product_rows(start: int, stop: int, ctx: _Ctx) -> list[Row]:
    bits = ctx.rng.getrandbits
    v = ctx.variant
    prefix = ctx.sku_prefix
    brands, adjs, nouns = _BRANDS, _ADJECTIVES, _NOUNS
    cats, uses, feats = _CATEGORIES, _USES, _FEATURES
    n_cat, n_use, n_feat = len(cats), len(uses), len(feats)
    rev = f" Rev. {v}." if v else ""
    out: list[Row] = []
    for i in range(start, stop):
        r = bits(64)
        brand = brands[r & 15]
        adj = adjs[((r >> 4) + v) & 31]
        noun = nouns[(r >> 9) & 31]
        form = (r >> 14) & 7
        if form == 0:
            name = f'{brand} {adj} {noun}, {(r >> 17) % 20 + 12}"'
        elif form == 1:
            name = f"{adj} {noun}, {brand}"
        elif form == 2:
            name = f'{brand} "{adj}" {noun}'
        else:
            name = f"{brand} {adj} {noun}"
        if (r >> 22) & 15 == 0:
            description = ""
        else:
            description = (
                f"{adj} {noun.lower()} for {uses[(r >> 26) % n_use]}, "
                f"{feats[((r >> 30) + v) % n_feat]}; ships in {(r >> 34) % 9 + 1} days.{rev}"
            )
            if (r >> 38) & 511 == 0:  # ~1 in 512 rows: a quoted newline
                description += "\nNote: delivered pre-assembled, handle with care."
        category = "" if (r >> 47) & 31 == 0 else cats[(r >> 52) % n_cat]
        cents = 99 + (r >> 12) % 99_900
        if (r >> 57) & 3 == 0:  # round prices are common
            cents = cents // 100 * 100 + 99
        cents += 25 * v
        out.append([f"{prefix}-{i:07d}", name, description, category, _money(cents)])
    return out


def _inventory_rows(start: int, stop: int, ctx: _Ctx) -> list[Row]:
    bits = ctx.rng.getrandbits
    v = ctx.variant
    prefix = ctx.sku_prefix
    w = ctx.warehouses
    reasons, notes = _REASONS, _NOTES
    n_reason, n_notes = len(reasons), len(notes)
    out: list[Row] = []
    for i in range(start, stop):
        r = bits(32)
        quantity = (r & 0xFFF) % 2500 if (r >> 12) & 15 else 0
        quantity += 7 * v
        out.append([
            f"{prefix}-{i // w:07d}",
            f"WH-{i % w:03d}",
            str(quantity),
            reasons[((r >> 16) + v) % n_reason],
            notes[(r >> 20) % n_notes],
        ])
    return out


def _pricing_rows(start: int, stop: int, ctx: _Ctx) -> list[Row]:
    v = ctx.variant
    prefix = ctx.sku_prefix
    per_sku = _PRICING_PER_SKU
    n_min = len(_MIN_QUANTITIES)
    tiers, mins = PRICE_TIERS, _MIN_QUANTITIES
    salt = ctx.salt
    out: list[Row] = []
    for i in range(start, stop):
        combo = i % per_sku
        # One list price per sku (a seeded hash of its index, so all its rows agree),
        # discounted by tier and quantity break.
        base = 500 + (((i // per_sku) ^ salt) * 0x9E3779B97F4A7C15 >> 24) % 50_000
        tier_i, min_i = divmod(combo, n_min)
        cents = base * (100 - 5 * tier_i - 3 * min_i) // 100 + 11 * v
        out.append([f"{prefix}-{i // per_sku:07d}", tiers[tier_i], _money(cents), mins[min_i]])
    return out


def _customer_rows(start: int, stop: int, ctx: _Ctx) -> list[Row]:
    bits = ctx.rng.getrandbits
    v = ctx.variant
    first, last, companies, tiers = _FIRST, _LAST, _COMPANIES, _CUSTOMER_TIERS
    n_comp, n_tier = len(companies), len(tiers)
    out: list[Row] = []
    for i in range(start, stop):
        r = bits(32)
        name = f"{first[((r & 31) + v) & 31]} {last[(r >> 5) & 31]}"
        if (r >> 10) & 15 == 0:
            name = f"{last[(r >> 5) & 31]}, {first[((r & 31) + v) & 31]}"
        out.append([
            _email(i),
            name,
            companies[((r >> 14) + v) % n_comp],
            tiers[(r >> 18) % n_tier],
        ])
    return out


_ROW_MAKERS: dict[str, Callable[[int, int, _Ctx], list[Row]]] = {
    "warehouses": _warehouse_rows,
    "products": _product_rows,
    "inventory": _inventory_rows,
    "pricing": _pricing_rows,
    "customers": _customer_rows,
}


# --- invalid rows -----------------------------------------------------------------------

def _invalidate(entity: str, row: Row, kind: str, i: int, sku_prefix: str) -> None:
    """Make ``row`` (data row ``i``) invalid in place, in the way ``kind`` names."""
    cols = COLUMNS[entity]
    if kind == "empty_name":
        row[cols.index("name")] = ""
    elif kind == "long_name":
        row[cols.index("name")] = _LONG_NAME
    elif kind == "control_char":
        pos = cols.index("name")
        row[pos] = row[pos][:3] + "\x07" + row[pos][3:]
    elif kind == "decimal_comma":
        if entity == "inventory":
            row[cols.index("quantity")] = f"1,{i % 1000:03d}"
        else:
            row[cols.index("price")] = f"{i % 90 + 10},50"
    elif kind == "negative":
        if entity == "inventory":
            row[cols.index("quantity")] = "-3"
        else:
            row[cols.index("price")] = "-3"
    elif kind == "empty_quantity":
        row[cols.index("quantity")] = ""
    elif kind == "empty_price":
        row[cols.index("price")] = ""
    elif kind == "zero_min_quantity":
        row[cols.index("min_quantity")] = "0"
    elif kind == "unknown_warehouse":
        row[1] = "X" + row[1]  # still unique: the original (sku, warehouse) pair was
    elif kind == "unknown_sku":
        row[0] = row[0].replace(f"{sku_prefix}-", f"{sku_prefix}-X", 1)
    elif kind == "bad_email":
        template = _BAD_EMAILS[(i // 7) % len(_BAD_EMAILS)]
        row[0] = template.format(i=i, d=i % 50)
    else:  # pragma: no cover - INVALID_KINDS and this function are kept in step
        raise AssertionError(kind)


def _apply_invalid(entity: str, batch: list[Row], start: int, invalid_every: int,
                   sku_prefix: str) -> None:
    kinds = INVALID_KINDS[entity]
    # Data rows are numbered from 1 here: rows N, 2N, ... are invalid.
    first = (start // invalid_every + 1) * invalid_every  # first multiple > start
    stop = start + len(batch)
    for number in range(first, stop + 1, invalid_every):
        i = number - 1
        kind = kinds[(number // invalid_every - 1) % len(kinds)]
        _invalidate(entity, batch[i - start], kind, i, sku_prefix)


# --- public API -------------------------------------------------------------------------

def _check(entity: str, rows: int, invalid_every: int, warehouses: int) -> None:
    if entity not in COLUMNS:
        raise ValueError(f"unknown entity {entity!r}; expected one of {', '.join(ENTITIES)}")
    if rows < 0:
        raise ValueError("rows must be >= 0")
    if invalid_every < 0:
        raise ValueError("invalid_every must be >= 0")
    if warehouses < 1:
        raise ValueError("warehouses must be >= 1")


def write_file(
    entity: str,
    path: Path,
    rows: int,
    *,
    seed: int = 1,
    invalid_every: int = 0,
    sku_prefix: str = "SKU",
    variant: int = 0,
    warehouses: int = 20,
) -> int:
    """Write ``rows`` data rows of ``entity`` (plus a header) to ``path``; return its size.

    The output depends only on the arguments. ``variant`` changes non-key values of every
    row; ``invalid_every=N`` makes data rows N, 2N, ... invalid (see :data:`INVALID_KINDS`).
    """
    _check(entity, rows, invalid_every, warehouses)
    path = Path(path)
    salt = random.Random(seed ^ 0x5EED).getrandbits(32)
    ctx = _Ctx(random.Random(seed), sku_prefix, variant, warehouses, salt)
    make = _ROW_MAKERS[entity]
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\r\n")
        writer.writerow(COLUMNS[entity])
        for start in range(0, rows, _BATCH):
            stop = min(start + _BATCH, rows)
            batch = make(start, stop, ctx)
            if invalid_every:
                _apply_invalid(entity, batch, start, invalid_every, sku_prefix)
            writer.writerows(batch)
    return path.stat().st_size


def keys_only(
    entity: str,
    path: Path,
    rows: int,
    *,
    seed: int = 1,
    invalid_every: int = 0,
    sku_prefix: str = "SKU",
    variant: int = 0,
    warehouses: int = 20,
) -> int:
    """Write only the natural-key columns of the same rows :func:`write_file` writes.

    For a delete benchmark. ``seed`` and ``variant`` do not affect keys and are accepted
    for symmetry. ``invalid_every=N`` replaces the key of data rows N, 2N, ... with one
    that does not exist (a "not found" row error on delete). Returns the size in bytes.
    """
    del seed, variant  # keys never depend on them
    _check(entity, rows, invalid_every, warehouses)
    path = Path(path)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\r\n")
        writer.writerow(KEY_COLUMNS[entity])
        for start in range(0, rows, _BATCH):
            stop = min(start + _BATCH, rows)
            batch = [_key(entity, i, sku_prefix, warehouses) for i in range(start, stop)]
            if invalid_every:
                first = (start // invalid_every + 1) * invalid_every
                for number in range(first, stop + 1, invalid_every):
                    row = batch[number - 1 - start]
                    row[0] = ("missing-" + row[0]) if entity == "customers" else ("X" + row[0])
            writer.writerows(batch)
    return path.stat().st_size


def references_needed(entity: str, rows: int, *, warehouses: int = 20) -> dict[str, int]:
    """How many products and warehouses ``rows`` rows of ``entity`` refer to.

    Generate at least that many products/warehouses (same ``sku_prefix``) first.
    """
    if entity == "inventory":
        return {"products": -(-rows // warehouses), "warehouses": min(rows, warehouses)}
    if entity == "pricing":
        return {"products": -(-rows // _PRICING_PER_SKU), "warehouses": 0}
    return {"products": 0, "warehouses": 0}


# --- command line -----------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.generate",
        description="Write a deterministic, realistic bulkops CSV file.",
    )
    parser.add_argument("entity", choices=ENTITIES)
    parser.add_argument("rows", type=int)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--invalid-every", type=int, default=0, metavar="N")
    parser.add_argument("--variant", type=int, default=0)
    parser.add_argument("--sku-prefix", default="SKU")
    parser.add_argument("--warehouses", type=int, default=20)
    parser.add_argument("--keys-only", action="store_true",
                        help="write only the natural-key columns (for a delete)")
    args = parser.parse_args(argv)
    func = keys_only if args.keys_only else write_file
    began = time.perf_counter()
    try:
        size = func(
            args.entity, args.out, args.rows, seed=args.seed,
            invalid_every=args.invalid_every, sku_prefix=args.sku_prefix,
            variant=args.variant, warehouses=args.warehouses,
        )
    except ValueError as exc:
        parser.error(str(exc))
    elapsed = time.perf_counter() - began
    print(f"{size} bytes written to {args.out} in {elapsed:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
