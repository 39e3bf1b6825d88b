"""Streaming writer of parquet shards (columns text, id, source) for one split.

Rows are buffered up to a row group, then written; a shard is closed after `shard_docs` rows.
The writer works inside a temporary directory that `prepare` renames into place at the end, so
readers never see a half-written split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SCHEMA_FIELDS = ("text", "id", "source")
_ROW_GROUP_ROWS = 4096
_ROW_GROUP_BYTES = 32 << 20


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema([(name, pa.string()) for name in SCHEMA_FIELDS])


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.parquet"


class ShardWriter:
    """Append documents to `directory/shard-NNNNN.parquet`, `shard_docs` per shard."""

    def __init__(self, directory: Path, shard_docs: int) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.shard_docs = shard_docs
        self.shards: list[Path] = []
        self.documents = 0
        self._writer: Any = None
        self._in_shard = 0
        self._rows: dict[str, list[str]] = {name: [] for name in SCHEMA_FIELDS}
        self._buffered_bytes = 0

    def add(self, text: str, doc_id: str, source: str) -> None:
        self._rows["text"].append(text)
        self._rows["id"].append(doc_id)
        self._rows["source"].append(source)
        self._buffered_bytes += len(text)
        self.documents += 1
        self._in_shard += 1
        if len(self._rows["text"]) >= _ROW_GROUP_ROWS or self._buffered_bytes >= _ROW_GROUP_BYTES:
            self._flush()
        if self._in_shard >= self.shard_docs:
            self._close_shard()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._rows["text"]:
            return
        if self._writer is None:
            path = self.directory / shard_name(len(self.shards))
            self._writer = pq.ParquetWriter(path, _schema(), compression="zstd")
            self.shards.append(path)
        self._writer.write_table(pa.table(self._rows, schema=_schema()))
        self._rows = {name: [] for name in SCHEMA_FIELDS}
        self._buffered_bytes = 0

    def _close_shard(self) -> None:
        self._flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._in_shard = 0

    def close(self) -> list[Path]:
        """Finish the last shard; a split with no documents still gets one empty shard, so every
        prepared corpus has the same layout. Returns the shard paths."""
        self._close_shard()
        if not self.shards:
            import pyarrow.parquet as pq

            path = self.directory / shard_name(0)
            pq.write_table(_schema().empty_table(), path, compression="zstd")
            self.shards.append(path)
        return self.shards
