"""Entity specs and record validation: normalised values and the messages users read."""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulkops.entities import SPECS, EntitySpec, spec_for
from bulkops.entities.validation import canonical_price
from bulkops.errors import UsageError
from bulkops.model import EntityType, FieldError, OperationType
from tests.helpers import validate_records

IMPORT, UPDATE, DELETE = OperationType.IMPORT, OperationType.UPDATE, OperationType.DELETE


def validate(
    entity: str,
    row: dict[str, str],
    operation: OperationType = IMPORT,
    present: set[str] | None = None,
) -> dict[str, Any] | list[FieldError]:
    spec = spec_for(entity)
    columns = frozenset(row if present is None else present)
    [result] = validate_records(spec.validator(operation, columns), [row])
    return result


def record(entity: str, row: dict[str, str], **kwargs: Any) -> dict[str, Any]:
    result = validate(entity, row, **kwargs)
    assert isinstance(result, dict), result
    return result


def errors(entity: str, row: dict[str, str], **kwargs: Any) -> dict[str | None, str]:
    result = validate(entity, row, **kwargs)
    assert isinstance(result, list), result
    return {e.field: e.message for e in result}


def product(**cells: str) -> dict[str, str]:
    row = {"sku": "SKU-1", "name": "Chair", "description": "", "category": "", "price": ""}
    row.update(cells)
    return row


# --- the specs ------------------------------------------------------------------------------


def test_specs_cover_every_entity_with_contract_columns() -> None:
    assert set(SPECS) == set(EntityType)
    assert {e.value: s.field_names for e, s in SPECS.items()} == {
        "warehouses": ("code", "name"),
        "products": ("sku", "name", "description", "category", "price"),
        "inventory": ("sku", "warehouse_code", "quantity", "reason", "notes"),
        "pricing": ("sku", "price_tier", "price", "min_quantity"),
        "customers": ("email", "name", "company", "price_tier"),
    }
    assert {e.value: s.key for e, s in SPECS.items()} == {
        "warehouses": ("code",),
        "products": ("sku",),
        "inventory": ("sku", "warehouse_code"),
        "pricing": ("sku", "price_tier", "min_quantity"),
        "customers": ("email",),
    }


def test_references_point_at_products_and_warehouses() -> None:
    inventory = spec_for("inventory").references
    assert [(r.fields, r.entity, r.target_fields) for r in inventory] == [
        (("sku",), EntityType.PRODUCTS, ("sku",)),
        (("warehouse_code",), EntityType.WAREHOUSES, ("code",)),
    ]
    [pricing] = spec_for("pricing").references
    assert (pricing.fields, pricing.entity, pricing.target_fields) == (
        ("sku",),
        EntityType.PRODUCTS,
        ("sku",),
    )


@pytest.mark.parametrize("spec", SPECS.values(), ids=str)
def test_template_row_is_a_valid_import(spec: EntitySpec) -> None:
    result = record(spec.entity, spec.template_row)
    assert set(result) == set(spec.field_names)


def test_spec_for_accepts_names_and_rejects_unknown_ones() -> None:
    assert spec_for(" Products ") is SPECS[EntityType.PRODUCTS]
    assert spec_for(EntityType.PRICING) is SPECS[EntityType.PRICING]
    with pytest.raises(UsageError) as raised:
        spec_for("prodcts")
    assert "prodcts" in str(raised.value)
    assert "warehouses, products, inventory, pricing, customers" in str(raised.value)


def test_key_of_reads_key_fields_in_key_order() -> None:
    spec = spec_for("pricing")
    values = {"price": "1.00", "min_quantity": 5, "price_tier": "gold", "sku": "A"}
    assert spec.key_of(values) == ("A", "gold", 5)


def test_validators_are_built_once_per_operation_and_columns() -> None:
    spec = spec_for("products")
    first = spec.validator(UPDATE, frozenset({"sku", "name"}))
    assert spec.validator(UPDATE, frozenset({"name", "sku"})) is first
    assert spec.validator(UPDATE, frozenset({"sku", "price"})) is not first


def test_import_validator_needs_the_required_columns() -> None:
    with pytest.raises(UsageError, match="name"):
        spec_for("products").validator(IMPORT, frozenset({"sku"}))


# --- each entity: a valid row -----------------------------------------------------------------


def test_warehouse_row() -> None:
    assert record("warehouses", {"code": " WH-1 ", "name": "Main"}) == {
        "code": "WH-1",
        "name": "Main",
    }


def test_product_row_is_trimmed_and_price_canonical() -> None:
    row = {
        "sku": "  CH-1 ",
        "name": "Oak chair\tlarge",
        "description": "line one\nline two",
        "category": "Furniture",
        "price": " 149.5 ",
    }
    assert record("products", row) == {
        "sku": "CH-1",
        "name": "Oak chair\tlarge",
        "description": "line one\nline two",
        "category": "Furniture",
        "price": "149.50",
    }


def test_inventory_row_quantity_is_an_int() -> None:
    row = {"sku": "A", "warehouse_code": "W", "quantity": "007", "reason": "", "notes": ""}
    assert record("inventory", row) == {
        "sku": "A",
        "warehouse_code": "W",
        "quantity": 7,
        "reason": None,
        "notes": None,
    }


def test_pricing_row_min_quantity_defaults_to_one() -> None:
    row = {"sku": "A", "price_tier": "gold", "price": "3"}
    assert record("pricing", row) == {
        "sku": "A",
        "price_tier": "gold",
        "price": "3.00",
        "min_quantity": 1,
    }
    assert record("pricing", {**row, "min_quantity": " "})["min_quantity"] == 1
    assert record("pricing", {**row, "min_quantity": "12"})["min_quantity"] == 12


def test_customer_row_email_lower_case_and_default_tier() -> None:
    row = {"email": " Anna.Schmidt@Example.COM ", "name": "Anna", "company": "", "price_tier": ""}
    assert record("customers", row) == {
        "email": "anna.schmidt@example.com",
        "name": "Anna",
        "company": None,
        "price_tier": "standard",
    }
    absent = record("customers", {"email": "a@example.org", "name": "A"})
    assert absent["price_tier"] == "standard"
    assert absent["company"] is None


def test_international_email_is_normalised_and_lower_case() -> None:
    assert record("customers", {"email": "Jürgen@Bücher.DE", "name": "J"})["email"] == (
        "jürgen@bücher.de"
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("anna", "@-sign"),
        ("a@b", "period"),
        ("a..b@example.com", "two periods"),
        ("a@x.invalid", "special-use"),
        ("A@B.TEST", "special-use"),
    ],
)
def test_invalid_email_says_why(value: str, reason: str) -> None:
    message = errors("customers", {"email": value, "name": "A"})["email"]
    assert message.startswith(f"'{value}' is not a valid email address: ")
    assert reason in message


def test_email_too_long() -> None:
    value = "a" * 250 + "@example.com"
    assert errors("customers", {"email": value, "name": "A"}) == {
        "email": "is 262 characters long; the maximum is 254"
    }


# --- text rules -------------------------------------------------------------------------------


def test_empty_required_is_required() -> None:
    assert errors("products", product(sku="", name="   ")) == {
        "sku": "is required",
        "name": "is required",
    }


def test_empty_optional_is_none() -> None:
    result = record("products", product(description="  ", category=""))
    assert result["description"] is None
    assert result["category"] is None
    assert result["price"] is None


def test_too_long_text_names_its_length_and_the_maximum() -> None:
    assert errors("products", product(name="x" * 312)) == {
        "name": "is 312 characters long; the maximum is 255"
    }
    assert record("products", product(name="x" * 255))["name"] == "x" * 255


@pytest.mark.parametrize("space", ["\u3000", "\xa0", "\u2003", "\u0085", "\t", "\r\n"])
def test_every_kind_of_value_is_trimmed_of_unicode_whitespace(space: str) -> None:
    def padded(value: str) -> str:
        return f"{space}{value}{space}"

    row = product(sku=padded("CH-1"), name=padded("Chair"), price=padded("12.5"))
    assert record("products", row) == {
        "sku": "CH-1", "name": "Chair", "description": None, "category": None, "price": "12.50"
    }
    inventory = {"sku": "A", "warehouse_code": padded("W"), "quantity": padded("7"),
                 "reason": padded(""), "notes": ""}
    assert record("inventory", inventory)["quantity"] == 7
    assert record("inventory", inventory)["warehouse_code"] == "W"
    customer = {"email": padded("Ann@Example.com"), "name": "Ann", "company": "", "price_tier": ""}
    assert record("customers", customer)["email"] == "ann@example.com"


@pytest.mark.parametrize("char", ["\x1c", "\x1f"])
def test_a_separator_control_character_at_the_edge_is_refused_not_trimmed(char: str) -> None:
    # str.strip() would remove these; they are control characters, not white space.
    assert errors("products", product(name=f"{char}Chair")) == {
        "name": f"contains the control character U+{ord(char):04X} at position 1; "
        "only tab and line breaks are allowed"
    }


def test_length_counts_characters_after_trimming() -> None:
    assert record("warehouses", {"code": "  " + "ü" * 32 + "  ", "name": "n"})["code"] == "ü" * 32


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f"])
def test_control_characters_are_refused(char: str) -> None:
    assert errors("products", product(name=f"ab{char}cd")) == {
        "name": f"contains the control character U+{ord(char):04X} at position 3; "
        "only tab and line breaks are allowed"
    }


def test_tab_and_line_breaks_are_allowed() -> None:
    assert record("products", product(description="a\tb\r\nc"))["description"] == "a\tb\r\nc"


# --- prices -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "stored"),
    [
        ("12.5", "12.50"),
        ("0012.00", "12.00"),
        ("12", "12.00"),
        ("12.", "12.00"),
        (".5", "0.50"),
        ("0.01", "0.01"),
        ("9999999999.99", "9999999999.99"),
        ("12.50", "12.50"),
    ],
)
def test_price_is_stored_as_canonical_text(cell: str, stored: str) -> None:
    assert record("products", product(price=cell))["price"] == stored


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("12,50", "'12,50' is not a valid price: use a point as decimal separator, e.g. 12.50"),
        ("1,234.50", "'1,234.50' is not a valid price: write it without thousands separators"),
        ("-1", "'-1' is not a valid price: it must be greater than 0"),
        ("0", "'0' is not a valid price: it must be greater than 0"),
        ("0.00", "'0.00' is not a valid price: it must be greater than 0"),
        ("12.345", "'12.345' is not a valid price: it has more than 2 decimals"),
        ("12345678901", "'12345678901' is not a valid price: it has more than 10 digits"),
        ("1e3", "'1e3' is not a valid price: write a number with a point as decimal separator"),
        ("NaN", "'NaN' is not a valid price"),
        ("inf", "'inf' is not a valid price"),
        ("€12", "'€12' is not a valid price"),
        ("١٢", "'١٢' is not a valid price"),  # Arabic-Indic digits are not digits here
    ],
)
def test_invalid_price_says_why(cell: str, message: str) -> None:
    assert errors("products", product(price=cell))["price"].startswith(message)


def test_required_price_in_pricing() -> None:
    assert errors("pricing", {"sku": "A", "price_tier": "gold", "price": ""}) == {
        "price": "is required"
    }


@given(st.text(alphabet="0123456789.,-+e ", max_size=14))
def test_price_validation_agrees_with_canonical_price(cell: str) -> None:
    result = validate("products", product(price=cell))
    value = cell.strip()
    if not value:
        assert isinstance(result, dict)
        assert result["price"] is None
        return
    try:
        expected = canonical_price(value)
    except ValueError as exc:
        assert result == [FieldError("price", str(exc))]
    else:
        assert isinstance(result, dict)
        assert result["price"] == expected


# --- whole numbers ----------------------------------------------------------------------------


def inventory(quantity: str) -> dict[str, str]:
    return {"sku": "A", "warehouse_code": "W", "quantity": quantity}


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("3.0", "'3.0' is not a whole number"),
        ("ten", "'ten' is not a whole number"),
        ("1,000", "'1,000' is not a whole number: write it without thousands separators"),
        ("-1", "'-1' is too small: the minimum is 0"),
        ("+5", "'+5' is not a valid number: write digits only, without a sign"),
        ("2147483648", "'2147483648' is too large: the maximum is 2147483647"),
        ("99999999999999", "'99999999999999' is too large: the maximum is 2147483647"),
        ("", "is required"),
    ],
)
def test_invalid_quantity_says_why(cell: str, message: str) -> None:
    assert errors("inventory", inventory(cell)) == {"quantity": message}


def test_quantity_bounds() -> None:
    assert record("inventory", inventory("0"))["quantity"] == 0
    assert record("inventory", inventory("2147483647"))["quantity"] == 2_147_483_647


def test_min_quantity_is_at_least_one() -> None:
    row = {"sku": "A", "price_tier": "gold", "price": "3", "min_quantity": "0"}
    assert errors("pricing", row) == {"min_quantity": "'0' is too small: the minimum is 1"}


@given(st.text(alphabet="0123456789+-., x", max_size=12))
def test_quantity_errors_are_always_explained(cell: str) -> None:
    result = validate("inventory", inventory(cell))
    if isinstance(result, list):
        [error] = result
        assert error.field == "quantity"
        assert not error.message.endswith("is not valid")
    else:
        assert result["quantity"] == int(cell)


@given(st.text(max_size=8))
def test_text_errors_are_always_explained(cell: str) -> None:
    result = validate("warehouses", {"code": cell, "name": "n"})
    if isinstance(result, list):
        [error] = result
        assert error.field == "code"
        assert error.message == "is required" or error.message.startswith("contains")
    else:  # a key value is stored in its composed Unicode form (NFC)
        assert result["code"] == unicodedata.normalize("NFC", cell.strip())


# --- operations -------------------------------------------------------------------------------


def test_update_outputs_the_key_and_the_present_columns_only() -> None:
    result = record("products", {"sku": "A", "price": "5"}, operation=UPDATE)
    assert result == {"sku": "A", "price": "5.00"}


def test_update_empty_optional_clears_and_empty_required_fails() -> None:
    present = {"sku", "name", "category"}
    assert record(
        "products", {"sku": "A", "name": "N", "category": ""}, operation=UPDATE, present=present
    ) == {"sku": "A", "name": "N", "category": None}
    assert errors(
        "products", {"sku": "A", "name": "", "category": "x"}, operation=UPDATE, present=present
    ) == {"name": "is required"}


def test_update_empty_field_with_default_resets_it() -> None:
    result = record("customers", {"email": "a@example.org", "price_tier": ""}, operation=UPDATE)
    assert result == {"email": "a@example.org", "price_tier": "standard"}


def test_update_ignores_cells_of_absent_columns() -> None:
    row = {"sku": "A", "name": "N", "price": "not a price"}
    assert record("products", row, operation=UPDATE, present={"sku", "name"}) == {
        "sku": "A",
        "name": "N",
    }


def test_update_key_with_default_may_be_absent() -> None:
    row = {"sku": "A", "price_tier": "gold", "price": "2"}
    assert record("pricing", row, operation=UPDATE)["min_quantity"] == 1


def test_delete_outputs_only_the_key_and_ignores_other_cells() -> None:
    row = {"sku": " A ", "name": "", "price": "12,50", "description": "\x00"}
    assert record("products", row, operation=DELETE) == {"sku": "A"}


def test_delete_still_validates_the_key() -> None:
    assert errors("customers", {"email": "nope", "name": "x"}, operation=DELETE) == {
        "email": "'nope' is not a valid email address: An email address must have an @-sign."
    }


def test_delete_pricing_key_defaults_min_quantity() -> None:
    row = {"sku": "A", "price_tier": "gold"}
    assert record("pricing", row, operation=DELETE) == {
        "sku": "A",
        "price_tier": "gold",
        "min_quantity": 1,
    }


def test_export_has_no_validator() -> None:
    with pytest.raises(UsageError):
        spec_for("products").validator(OperationType.EXPORT, frozenset())


# --- batches ----------------------------------------------------------------------------------


def test_batch_keeps_order_and_attributes_every_error_to_its_record() -> None:
    spec = spec_for("products")
    rows = [
        product(sku="A", price="1"),
        product(sku="", price="12,50"),
        product(sku="C"),
        product(sku="D", name="x" * 300),
        product(sku="E", price="2.5"),
    ]
    results = validate_records(spec.validator(IMPORT, frozenset(spec.field_names)), rows)
    assert len(results) == 5
    assert [r["sku"] if isinstance(r, dict) else None for r in results] == [
        "A",
        None,
        "C",
        None,
        "E",
    ]
    assert results[1] == [
        FieldError("sku", "is required"),
        FieldError(
            "price", "'12,50' is not a valid price: use a point as decimal separator, e.g. 12.50"
        ),
    ]
    assert results[3] == [FieldError("name", "is 300 characters long; the maximum is 255")]
    assert isinstance(results[4], dict)
    assert results[4]["price"] == "2.50"


def test_empty_batch() -> None:
    spec = spec_for("warehouses")
    assert validate_records(spec.validator(IMPORT, frozenset(spec.field_names)), []) == []


def test_batch_of_only_invalid_records() -> None:
    spec = spec_for("warehouses")
    validator = spec.validator(IMPORT, frozenset(spec.field_names))
    results = validate_records(validator, [{"code": "", "name": ""}] * 3)
    assert results == [[FieldError("code", "is required"), FieldError("name", "is required")]] * 3
