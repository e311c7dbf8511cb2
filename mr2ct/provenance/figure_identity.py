"""The identity a figure carries: its provenance record id, commit and config hash.

PNG files get text chunks (``mr2ct-record``, ``mr2ct-commit``, ``mr2ct-config-sha256``),
PDF files the same fields in their *Subject*/*Keywords* (written by matplotlib from
:func:`identity_metadata`). Chunks are rewritten in place, pixels untouched, so a figure
stays byte-reproducible for an identical job.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path

from mr2ct.data.io import atomic_write_bytes
from mr2ct.provenance.job_identity import current_identity

__all__ = ["PNG_KEYS", "identity_metadata", "read_png_text", "stamp_png", "stamp_pngs"]

PNG_KEYS = {"record": "mr2ct-record", "commit": "mr2ct-commit", "config_sha256": "mr2ct-config-sha256"}
UNKNOWN = "unknown"


def identity_metadata(fmt: str, identity: Mapping[str, str] | None = None) -> dict[str, str]:
    """``savefig(metadata=...)`` entries carrying the job's identity; ``{}`` outside a job.

    ``fmt`` is ``"png"`` or ``"pdf"`` (a leading dot is ignored). PNG: text
    chunks ``mr2ct-record``, ``mr2ct-commit``, ``mr2ct-config-sha256``. PDF:
    ``Subject`` and ``Keywords`` of the document information dictionary.
    """
    if identity is None:
        identity = current_identity()
    if not identity:
        return {}
    fmt = fmt.lower().lstrip(".")
    if fmt == "png":
        return {key: str(identity.get(field, UNKNOWN)) for field, key in PNG_KEYS.items()}
    if fmt == "pdf":
        keywords = "; ".join(f"{key}={identity.get(field, UNKNOWN)}" for field, key in PNG_KEYS.items())
        return {"Subject": f"mr2ct provenance record {identity['record']}", "Keywords": keywords}
    return {}


def stamp_pngs(paths: Iterable[Path], identity: Mapping[str, str]) -> None:
    """Stamp ``identity`` into every PNG of ``paths`` that does not carry it yet."""
    fields = identity_metadata("png", identity)
    for png in paths:
        try:
            if read_png_text(png).get(PNG_KEYS["record"]) != identity["record"]:
                stamp_png(png, fields)
        except ValueError:  # not a PNG after all: leave it alone
            continue


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    chunks, pos = [], len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        chunks.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
        if kind == b"IEND":
            break
    if not chunks or chunks[-1][0] != b"IEND":
        raise ValueError("truncated PNG file")
    return chunks


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + kind + payload + zlib.crc32(kind + payload).to_bytes(4, "big")


def _text_keyword(kind: bytes, payload: bytes) -> str | None:
    if kind in (b"tEXt", b"zTXt", b"iTXt"):
        return payload.split(b"\0", 1)[0].decode("latin-1")
    return None


def read_png_text(path: str | os.PathLike) -> dict[str, str]:
    """The text chunks (tEXt, zTXt, iTXt) of a PNG file."""
    out = {}
    for kind, payload in _png_chunks(Path(path).read_bytes()):
        key = _text_keyword(kind, payload)
        if key is None:
            continue
        rest = payload.split(b"\0", 1)[1] if b"\0" in payload else b""
        if kind == b"tEXt":
            out[key] = rest.decode("latin-1")
        elif kind == b"zTXt":
            out[key] = zlib.decompress(rest[1:]).decode("latin-1")
        else:
            flag, _method = rest[0], rest[1]
            _lang, _translated, text = rest[2:].split(b"\0", 2)
            out[key] = (zlib.decompress(text) if flag else text).decode("utf-8")
    return out


def stamp_png(path: str | os.PathLike, fields: Mapping[str, str]) -> Path:
    """Set text chunks of a PNG (replacing chunks with the same keywords), atomically.

    Only chunks are added: the image data is untouched, nothing is re-encoded.
    ASCII/Latin-1 values become tEXt, others iTXt.
    """
    path = Path(path)
    chunks = _png_chunks(path.read_bytes())
    keys = set(fields)
    kept = [(k, p) for k, p in chunks if _text_keyword(k, p) not in keys]
    new = []
    for key, value in fields.items():
        keyword = key.encode("latin-1")
        if not 1 <= len(keyword) <= 79:
            raise ValueError(f"PNG text keyword must have 1-79 characters: {key!r}")
        try:
            new.append(_chunk(b"tEXt", keyword + b"\0" + str(value).encode("latin-1")))
        except UnicodeEncodeError:
            new.append(_chunk(b"iTXt", keyword + b"\0\0\0\0\0" + str(value).encode("utf-8")))
    body = b"".join(_chunk(k, p) for k, p in kept[:-1])
    atomic_write_bytes(path, _PNG_SIGNATURE + body + b"".join(new) + _chunk(*kept[-1]))
    return path
