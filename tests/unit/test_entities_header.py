"""Header mapping: which column holds which field, and why a header is rejected."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from bulkops.entities import SIMILAR_THRESHOLD, HeaderMap, map_header, similarity, spec_for
from bulkops.errors import FileProblem, FileRejected
from bulkops.model import OperationType

IMPORT, UPDATE, DELETE = OperationType.IMPORT, OperationType.UPDATE, OperationType.DELETE
PRODUCT_COLUMNS = ["sku", "name", "description", "category", "price"]


def mapped(
    header: list[str],
    operation: OperationType = IMPORT,
    mapping: Mapping[str, str] | None = None,
    entity: str = "products",
) -> HeaderMap:
    return map_header(spec_for(entity), header, operation, mapping)


def problems(
    header: list[str],
    operation: OperationType = IMPORT,
    mapping: Mapping[str, str] | None = None,
    entity: str = "products",
) -> list[FileProblem]:
    with pytest.raises(FileRejected) as raised:
        mapped(header, operation, mapping, entity)
    return raised.value.problems


def test_template_header_maps_every_column() -> None:
    header = mapped(PRODUCT_COLUMNS)
    assert header.columns == tuple(enumerate(PRODUCT_COLUMNS))
    assert header.present == frozenset(PRODUCT_COLUMNS)
    assert header.to_dict(["A", "Chair", "", "Tools", "1.00"]) == {
        "sku": "A",
        "name": "Chair",
        "description": "",
        "category": "Tools",
        "price": "1.00",
    }


def test_headers_match_case_insensitively_ignoring_spaces() -> None:
    header = mapped([" SKU ", "Name", "\ufeffPrice"])
    assert header.columns == ((0, "sku"), (1, "name"), (2, "price"))
    assert header.column_of("sku") == "SKU"
    assert header.column_of("price") == "Price"
    assert header.column_of("category") == "category"


def test_optional_columns_may_be_absent_and_order_is_free() -> None:
    header = mapped(["price", "name", "sku"])
    assert header.present == {"sku", "name", "price"}
    assert header.to_dict(["9", "Chair", "A"]) == {"sku": "A", "name": "Chair", "price": "9"}


def test_short_record_gets_empty_cells() -> None:
    header = mapped(PRODUCT_COLUMNS)
    assert header.to_dict(["A", "Chair"]) == {
        "sku": "A",
        "name": "Chair",
        "description": "",
        "category": "",
        "price": "",
    }
    single = mapped(["sku"], DELETE)
    assert single.to_dict(["A"]) == {"sku": "A"}
    assert single.to_dict([]) == {"sku": ""}


def test_mapping_renames_and_ignores_columns() -> None:
    header = mapped(
        ["Artikelnummer", "Bezeichnung", "Preis", "Lagerort"],
        mapping={" artikelnummer ": "sku", "BEZEICHNUNG": "Name", "Preis": "price", "Lagerort": ""},
    )
    assert header.columns == ((0, "sku"), (1, "name"), (2, "price"))
    assert header.column_of("sku") == "Artikelnummer"


def test_underscore_columns_of_an_error_report_are_ignored() -> None:
    header = mapped(["_row", "_line", "_errors", "sku", "name"])
    assert header.columns == ((3, "sku"), (4, "name"))
    assert header.to_dict(["2", "2", "bad", "A", "Chair"]) == {"sku": "A", "name": "Chair"}


def test_duplicate_column_names_both_positions() -> None:
    [problem] = problems(["sku", "name", "SKU "])
    assert problem.code == "duplicate_column"
    assert problem.column == "sku"
    assert "columns 1 and 3" in problem.message


def test_two_columns_mapped_to_one_field_are_duplicates() -> None:
    [problem] = problems(["sku", "name", "Artikel"], mapping={"Artikel": "sku"})
    assert problem.code == "duplicate_column"
    assert "Columns 1 and 3 ('sku', 'Artikel') all hold the field 'sku'" in problem.message


def test_unknown_column_suggests_the_closest_field() -> None:
    [problem] = problems(["sku", "name", "description", "category", "prce"])
    assert problem == FileProblem(
        code="unknown_column",
        message="Unknown column 'prce' (column 5). Did you mean 'price'?",
        column="prce",
        suggestion="price",
        hint_field="mapping",  # each door words how to map it
    )


def test_unknown_column_suggests_the_field_its_words_spell() -> None:
    found = problems(["Item SKU", "ProductName", "description", "Unit price"])
    assert [(p.column, p.suggestion) for p in found if p.code == "unknown_column"] == [
        ("Item SKU", "sku"),
        ("ProductName", "name"),
        ("Unit price", "price"),
    ]
    assert "Did you mean 'sku'?" in found[0].message


@pytest.mark.parametrize(
    ("header", "field", "score"),
    [
        ("Item SKU", "sku", 0.8),  # one of two words
        ("E-mail address", "email", 0.87),  # two of three words spell it together
        ("Price tier", "price_tier", 1.0),
        ("Prise", "price", 0.8),  # no word: difflib's ratio
        ("SKU list", "sku", 0.8),
        ("Qty", "quantity", 0.8),  # an abbreviation: its letters in order, the same first
        ("Min qty", "min_quantity", 0.8),
        ("Item Qty", "quantity", 0.7),  # one of two words abbreviates it
    ],
)
def test_similarity_of_a_column_name_and_a_field(header: str, field: str, score: float) -> None:
    assert round(similarity(header, field), 2) == score
    assert similarity("Quantity on hand", "price") < SIMILAR_THRESHOLD
    assert similarity("Qt", "quantity") < SIMILAR_THRESHOLD  # too short to tell
    assert similarity("Tier", "price_tier") < SIMILAR_THRESHOLD  # not its first letter
    assert similarity("Min", "min_quantity") < SIMILAR_THRESHOLD  # a word of it, not short


def test_unknown_column_suggests_the_field_it_abbreviates() -> None:
    found = problems(["SKU", "Whse", "Qty", "Reorder point"], entity="inventory")
    assert [(p.column, p.suggestion) for p in found if p.code == "unknown_column"] == [
        ("Whse", "warehouse_code"),
        ("Qty", "quantity"),
        ("Reorder point", None),
    ]


def test_unknown_column_without_a_close_field_lists_the_fields() -> None:
    [problem] = problems(["sku", "name", "colour"])
    assert problem.code == "unknown_column"
    assert problem.suggestion is None
    assert "Unknown column 'colour' (column 3)." in problem.message
    assert "sku, name, description, category, price" in problem.message
    assert "--map" not in problem.message and problem.hint_field == "mapping"


def test_unknown_column_does_not_suggest_a_field_already_present() -> None:
    [problem] = problems(["sku", "name", "price", "prices"])
    assert problem.suggestion is None


def test_a_file_of_another_entity_is_named_as_such() -> None:
    found = problems(["SKU", "warehouse_code", "Quantity", "_notes"], entity="products")
    assert found[0] == FileProblem(
        code="other_entity",
        message=(
            "These are the columns of inventory, not of products: if the file holds "
            "inventory, import it as inventory."
        ),
        suggestion="inventory",
        hint_field="entity_type",
        hint_value="inventory",
    )
    assert [p.code for p in found[1:]] == ["unknown_column", "unknown_column", "missing_columns"]
    # A column no entity has, or one that lacks what the other entity needs: no such guess.
    for header, entity in (
        (["sku", "warehouse_code", "quantity", "colour"], "products"),
        (["sku", "warehouse_code"], "products"),
        (["sku", "name", "prce"], "products"),
    ):
        assert "other_entity" not in [p.code for p in problems(header, entity=entity)]


def test_missing_required_columns_are_listed_together() -> None:
    [problem] = problems(["description"], entity="products")
    assert problem.code == "missing_columns"
    assert problem.message.startswith("Missing required columns: sku, name.")


def test_missing_required_for_inventory() -> None:
    [problem] = problems(["sku", "notes"], entity="inventory")
    assert problem.message == (
        "Missing required columns: warehouse_code, quantity. "
        "An inventory import file needs the columns sku, warehouse_code, quantity."
    )


def test_empty_column_name_says_which_column() -> None:
    [problem] = problems(["sku", " ", "name"])
    assert problem.code == "empty_column"
    assert problem.message.startswith("Column 2 has no name.")


def test_every_problem_is_listed_at_once() -> None:
    found = problems(["prce", "", "nme", "prce"], mapping={"x": "nope"})
    codes = [p.code for p in found]
    assert codes.count("unknown_column") == 3
    assert "empty_column" in codes
    assert "unknown_field" in codes
    assert "missing_columns" in codes
    assert "unmatched_mapping" not in codes  # a mapping to an unknown field is one problem


def test_mapping_to_an_unknown_field_is_a_problem() -> None:
    found = problems(["Artikel", "name"], mapping={"Artikel": "skuu"})
    assert found[0].code == "unknown_field"
    assert found[0].suggestion == "sku"
    assert "'Artikel=skuu'" in found[0].message


def test_mapping_that_matches_no_column_is_a_problem() -> None:
    [problem] = problems(["sku", "name"], mapping={"Preis": "price"})
    assert problem.code == "unmatched_mapping"
    assert "'Preis=price' matches no column" in problem.message


def test_unmatched_ignore_mapping_is_harmless() -> None:
    assert mapped(["sku", "name"], mapping={"Lagerort": ""}).present == {"sku", "name"}


def test_mapping_wins_over_the_underscore_rule() -> None:
    header = mapped(["_id", "name"], mapping={"_id": "sku"})
    assert header.columns == ((0, "sku"), (1, "name"))


def test_update_needs_the_key() -> None:
    [problem] = problems(["name", "price"], UPDATE)
    assert problem.code == "missing_columns"
    assert "sku" in problem.message


def test_update_needs_something_to_update() -> None:
    [problem] = problems(["sku"], UPDATE)
    assert problem.code == "nothing_to_update"
    assert "name, description, category, price" in problem.message


def test_update_with_key_and_one_column() -> None:
    header = mapped(["sku", "price"], UPDATE)
    assert header.present == {"sku", "price"}


def test_update_pricing_may_leave_out_min_quantity() -> None:
    header = mapped(["sku", "price_tier", "price"], UPDATE, entity="pricing")
    assert header.present == {"sku", "price_tier", "price"}


def test_delete_needs_only_the_key_and_ignores_everything_else() -> None:
    header = mapped(["name", "whatever", "", "SKU", "price"], DELETE)
    assert header.columns == ((3, "sku"),)
    assert header.present == {"sku"}
    [problem] = problems(["name", "whatever"], DELETE)
    assert problem.code == "missing_columns"
    assert "sku" in problem.message


def test_delete_rejects_a_duplicate_key_column() -> None:
    [problem] = problems(["sku", "Sku"], DELETE)
    assert problem.code == "duplicate_column"


def test_rejection_message_joins_all_problems() -> None:
    with pytest.raises(FileRejected) as raised:
        mapped(["prce"])
    assert "Unknown column 'prce'" in str(raised.value)
    assert "Missing required columns: sku, name." in str(raised.value)


@pytest.mark.parametrize(
    "header",
    [
        ["sku", "name", "description", "category", "price"],  # the template, as it is
        ["price", "sku", "name", "description", "category"],  # the same columns moved
        ["sku", "name", "notes", "description", "category", "price"],  # one ignored
    ],
)
def test_records_turn_into_columns_whatever_their_length(header: list[str]) -> None:
    mapping = {"notes": ""} if "notes" in header else {}
    columns = map_header(spec_for("products"), header, OperationType.IMPORT, mapping)
    fields = ["sku", "name", "description", "category", "price"]
    rows = [
        dict(zip(fields, (f"S-{i}", f"Name {i}", f"D {i}", "Tools", f"{i}.00"), strict=True))
        for i in range(4)
    ]
    full = [[row.get(h, "x") for h in header] for row in rows]

    def as_lists(records: list[list[str]]) -> list[list[str]]:
        return [list(column) for column in columns.to_columns(records, fields)]

    assert as_lists(full) == [[row[f] for row in rows] for f in fields]
    # A record with a cell too many, and one cut short after two cells (the rest blank).
    got = as_lists([[*full[0], "extra"], full[1][:2], *full[2:]])
    assert [column[0] for column in got] == [rows[0][f] for f in fields]
    assert [column[1] for column in got] == [
        full[1][header.index(f)] if header.index(f) < 2 else "" for f in fields
    ]
    # Every record a cell too many (a trailing delimiter, say): the extra cells are no field.
    assert as_lists([[*r, ""] for r in full]) == [[row[f] for row in rows] for f in fields]
