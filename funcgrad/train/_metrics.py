"""Metrics as JSON lines: one record per line, flushed as written."""

from __future__ import annotations

import json
import os


class MetricsLog:
    """Append records to ``path`` (``None``: keep them in memory only)."""

    def __init__(self, path: str | None, keep_until_step: int | None = None):
        self.path = path
        self.records: list[dict] = []
        if path is not None:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self.records = _read(path, keep_until_step)
            _rewrite(path, self.records)

    def write(self, record: dict) -> None:
        self.records.append(record)
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()


def _read(path: str, keep_until_step: int | None) -> list[dict]:
    """Records of an earlier run up to the step it is resumed from (none if starting afresh)."""
    if keep_until_step is None or not os.path.exists(path):
        return []
    records = []
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line torn by the crash
                continue
            if record.get("step", 0) <= keep_until_step:
                records.append(record)
    return records


def _rewrite(path: str, records: list[dict]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    os.replace(tmp, path)


def read_metrics(path: str) -> list[dict]:
    """Every record of a metrics.jsonl file."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
