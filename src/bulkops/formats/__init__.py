"""CSV in and out: the streaming reader and the neutralising writer.

Reading: :func:`open_csv` returns a :class:`CsvFile` whose ``records()`` stream
:class:`~bulkops.model.RawRecord` values; :func:`sniff_content` rejects binary uploads early.
Writing: :class:`CsvWriter` writes RFC 4180 CSV with formula neutralisation
(:func:`neutralise` / :func:`unneutralise`, one rule in :func:`is_formula_like` that the
dashboard uses too); :func:`error_report_header` gives the header of an error report.
"""

from bulkops.formats.reader import CsvFile, ReadLimits, ReadOptions, open_csv
from bulkops.formats.sniff import sniff_content
from bulkops.formats.table import TableFile, open_table
from bulkops.formats.writer import (
    CsvWriter,
    error_report_header,
    is_formula_like,
    neutralise,
    unneutralise,
)

__all__ = [
    "CsvFile",
    "CsvWriter",
    "ReadLimits",
    "ReadOptions",
    "TableFile",
    "error_report_header",
    "is_formula_like",
    "neutralise",
    "open_csv",
    "open_table",
    "sniff_content",
    "unneutralise",
]
