"""Uploads awaiting an operation and remembered mappings, within one organization.

``tx.uploads`` holds the files stored for review (``uploads``); ``tx.mappings`` the mapping
last used per entity and header (``saved_mappings``).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import RowMapping, delete, insert, select, update

from bulkops.store.clock import aware, utcnow
from bulkops.store.scoped import Scoped
from bulkops.store.tables import saved_mappings, uploads

__all__ = ["MappingStore", "UploadStore"]


def _row(mapping: RowMapping) -> dict[str, Any]:
    return {k: aware(v) for k, v in mapping.items() if k != "organization_id"}


class UploadStore(Scoped):
    """The ``uploads`` rows of one organization."""

    __slots__ = ()

    def insert(self, values: Mapping[str, Any]) -> None:
        row = dict(values)
        row["organization_id"] = self.org_id
        row["options"] = orjson.dumps(row["options"]).decode()
        self.conn.execute(insert(uploads).values(**row))

    def get(self, upload_id: str) -> dict[str, Any] | None:
        found = self.conn.execute(
            select(uploads).where(
                uploads.c.id == upload_id, uploads.c.organization_id == self.org_id
            )
        ).first()
        if found is None:
            return None
        row = _row(found._mapping)
        row["options"] = orjson.loads(row["options"])
        return row

    def set_options(self, upload_id: str, options: Mapping[str, Any]) -> None:
        self.conn.execute(
            update(uploads)
            .where(uploads.c.id == upload_id, uploads.c.organization_id == self.org_id)
            .values(options=orjson.dumps(dict(options)).decode())
        )

    def mark_used(self, upload_id: str, op_id: str) -> None:
        self.conn.execute(
            update(uploads)
            .where(uploads.c.id == upload_id, uploads.c.organization_id == self.org_id)
            .values(used_by_operation=op_id)
        )

    def expired(self, before: datetime, limit: int = 500) -> builtins.list[tuple[str, str]]:
        """(id, stored path) of uploads created before ``before`` that no operation used."""
        rows = self.conn.execute(
            select(uploads.c.id, uploads.c.file_path)
            .where(
                uploads.c.organization_id == self.org_id,
                uploads.c.used_by_operation.is_(None),
                uploads.c.created_at < before,
            )
            .order_by(uploads.c.created_at)
            .limit(limit)
        )
        return [(r.id, r.file_path) for r in rows]

    def delete(self, upload_ids: Sequence[str]) -> None:
        if upload_ids:
            self.conn.execute(
                delete(uploads).where(
                    uploads.c.organization_id == self.org_id, uploads.c.id.in_(upload_ids)
                )
            )


class MappingStore(Scoped):
    """The ``saved_mappings`` rows of one organization."""

    __slots__ = ()

    def save(
        self,
        entity: str,
        header_key: str,
        header: Sequence[str],
        mapping: Mapping[str, str],
        *,
        user_id: int | None,
        op_id: str | None,
    ) -> None:
        """Remember ``mapping`` for this entity and header (replacing the one there was)."""
        c = saved_mappings.c
        now = utcnow()
        values = {
            "header": orjson.dumps(list(header)).decode(),
            "mapping": orjson.dumps(dict(mapping)).decode(),
            "updated_at": now,
            "updated_by": user_id,
            "operation_id": op_id,
        }
        changed = self.conn.execute(
            update(saved_mappings)
            .where(
                c.organization_id == self.org_id,
                c.entity_type == entity,
                c.header_key == header_key,
            )
            .values(**values)
        ).rowcount
        if not changed:
            self.conn.execute(
                insert(saved_mappings).values(
                    organization_id=self.org_id,
                    entity_type=entity,
                    header_key=header_key,
                    created_at=now,
                    **values,
                )
            )

    def find(self, entity: str, header_key: str) -> dict[str, Any] | None:
        c = saved_mappings.c
        found = self.conn.execute(
            select(saved_mappings).where(
                c.organization_id == self.org_id,
                c.entity_type == entity,
                c.header_key == header_key,
            )
        ).first()
        return self._decode(found._mapping) if found is not None else None

    def list(
        self, *, entity: str | None = None, after_id: int = 0, limit: int = 100
    ) -> builtins.list[dict[str, Any]]:
        c = saved_mappings.c
        conditions = [c.organization_id == self.org_id, c.id > after_id]
        if entity is not None:
            conditions.append(c.entity_type == entity)
        rows = self.conn.execute(
            select(saved_mappings).where(*conditions).order_by(c.id).limit(limit)
        )
        return [self._decode(r._mapping) for r in rows]

    def delete(self, mapping_id: int) -> bool:
        c = saved_mappings.c
        return bool(
            self.conn.execute(
                delete(saved_mappings).where(
                    c.organization_id == self.org_id, c.id == mapping_id
                )
            ).rowcount
        )

    @staticmethod
    def _decode(mapping: RowMapping) -> dict[str, Any]:
        row = _row(mapping)
        row["header"] = orjson.loads(row["header"])
        row["mapping"] = orjson.loads(row["mapping"])
        return row
