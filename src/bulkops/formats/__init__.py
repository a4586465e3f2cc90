"""Files in and out: CSV and XLSX readers, the neutralising CSV writer, the XLSX writers.

Opening: :func:`open_table` picks the reader by the file's content (an XLSX workbook or
CSV text); :func:`diagnose` says which encoding a file that is not UTF-8 most likely is.

Reading: :func:`open_csv` returns a :class:`CsvFile` whose ``records()`` stream
:class:`~bulkops.model.RawRecord` values; :func:`sniff_content` rejects binary uploads early.
Writing: :class:`CsvWriter` writes RFC 4180 CSV with formula neutralisation
(:func:`neutralise` / :func:`unneutralise`, one rule in :func:`is_formula_like` that the
dashboard uses too); :func:`error_report_header` gives the header of an error report.
"""

from bulkops.formats.encodings import EncodingDiagnosis, diagnose
from bulkops.formats.reader import CsvFile, ReadLimits, ReadOptions, open_csv
from bulkops.formats.sniff import sniff_content
from bulkops.formats.table import TableFile, open_table, table_format
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
    "EncodingDiagnosis",
    "ReadLimits",
    "ReadOptions",
    "TableFile",
    "diagnose",
    "error_report_header",
    "is_formula_like",
    "neutralise",
    "open_csv",
    "open_table",
    "sniff_content",
    "table_format",
    "unneutralise",
]
