"""bulkops: validated, audited, undoable bulk operations."""

__version__ = "0.1.0"
