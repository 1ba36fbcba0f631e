"""Test helper: read W&B's binary offline log (run-*.wandb) without syncing, to check what
`wandb sync` would upload. Only the tests read it, so it lives here, not in bench.records.tracking."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any


def read_offline_run(run_dir: str | Path, wait_s: float = 30.0) -> dict[str, Any]:
    """read_run_file, again until the file holds its run and its exit records (at most wait_s).
    Why: W&B's writer process may still be flushing the file when finish() has returned (seen
    under load: the run record was missing)."""
    deadline = time.monotonic() + wait_s
    while True:
        out = read_run_file(run_dir)
        if (out["run"] is not None and out["exit_code"] is not None) or time.monotonic() > deadline:
            return out
        time.sleep(0.5)


def read_run_file(run_dir: str | Path) -> dict[str, Any]:
    """What an offline W&B run holds (run info, config, summary, history rows, exit code), read
    from its run-*.wandb file without syncing. Why: to check what `wandb sync` would upload.

    The file is a LevelDB-style log: a 7-byte header, then 32 KiB blocks of chunks, each chunk
    a 7-byte header (crc32, length, type: 1 full, 2 first, 3 middle, 4 last) and its bytes;
    the chunks assemble into protobuf `Record` messages."""
    from google.protobuf.json_format import MessageToDict
    from wandb.proto import wandb_internal_pb2 as pb

    path = next(Path(run_dir).glob("run-*.wandb"))
    raw = path.read_bytes()
    if raw[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    block, pos, chunks, messages = 32768, 7, b"", []
    while pos + 7 <= len(raw):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        chunks += raw[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            messages.append(chunks)
            chunks = b""
    out: dict[str, Any] = {"run": None, "config": {}, "summary": {}, "history": [], "exit_code": None}

    def key_of(item: Any) -> str:
        return item.key or "/".join(item.nested_key)

    for data in messages:
        rec = pb.Record()
        rec.ParseFromString(data)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out["run"] = MessageToDict(rec.run, preserving_proto_field_name=True)
            for item in rec.run.config.update:
                out["config"][key_of(item)] = json.loads(item.value_json)
        elif kind == "config":
            for item in rec.config.update:
                out["config"][key_of(item)] = json.loads(item.value_json)
        elif kind == "summary":
            for item in rec.summary.update:
                out["summary"][key_of(item)] = json.loads(item.value_json)
        elif kind == "history":
            out["history"].append({key_of(item): json.loads(item.value_json) for item in rec.history.item})
        elif kind == "exit":
            out["exit_code"] = rec.exit.exit_code
    return out
