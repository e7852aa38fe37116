"""The raw-data rules of the publish guard: does an output file carry telemetry records?

Published output is public, raw submissions are not. Each file is read once, every byte, in
bounded chunks (memory does not grow with the file), and so is everything inside it: gzip,
bz2, xz, lz4 frames, zip and tar archives are opened as they stream, nested up to
`max_depth` levels, and all decompressed bytes of one file together may not exceed
`max_expanded_bytes` (a decompression bomb is refused, not unpacked). A file the guard cannot
read to the end (corrupt or encrypted archive, unknown zip method) is refused too: what
cannot be checked is not published.

Rules (first hit wins; the finding names the rule and where: archive member and byte offset):
- `docid-seen`: a UUID-shaped token the pipeline has converted (looked up in the dedup table
  through `lookup`, in batches);
- `raw-record-line`: a line starting with a UUID (maybe quoted), tabs or spaces, then `{` or `[` (the
  `docId<TAB>{json}` record format, also when the docId is not, or no longer, in the table);
- `submission-json`: a JSON object with both `info` and `histograms` keys (a classic ping), or
  with `payload` and `clientId` or `environment` (a unified ping): found by a streaming
  tokenizer that tracks objects however deep, spread or escaped their keys are;
- `spool-record`: the spool/batch record magic `TPR1` followed by a header and a path.
"""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import io
import json
import lzma
import re
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from scheduler.errors import Refused

CHUNK = 256 * 1024
OVERLAP = 64  # longer than any fixed-width pattern below
LOOKUP_BATCH = 2000

# A UUID is found by its dashed tail (a pattern starting with a literal scans fast), then its
# first 8 hex digits and its surroundings are checked on the few hits.
UUID_TAIL = re.compile(rb"-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
HEX = frozenset(b"0123456789abcdefABCDEF")
RAW_LINE_AFTER = re.compile(rb"[\"']?[ \t]+[{\[]")
SPOOL_RECORD = re.compile(rb"TPR1[\s\S]{22}/")

GZIP_MAGIC = b"\x1f\x8b"
BZ2_MAGIC = b"BZh"
XZ_MAGIC = b"\xfd7zXZ\x00"
LZ4_MAGIC = b"\x04\x22\x4d\x18"
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")

# Keys of the submission shapes, as bits of a per-object mask.
KEY_BITS = {b"info": 1, b"histograms": 2, b"payload": 4, b"clientId": 8, b"environment": 16}
MAX_KEY = max(len(k) for k in KEY_BITS) * 6 + 2  # room for \uXXXX escapes
# A whole string (group 1: its closing quote, or "" / a lone backslash when the chunk ends
# inside it), or one structural character.
FAST_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*("|\\?\Z)|[{}\[\]:]', re.S)
STRING_STOP = re.compile(rb'["\\]')


def _submission_mask(mask: int) -> bool:
    return (mask & 3) == 3 or bool(mask & 4 and mask & 24)


@dataclasses.dataclass
class _Budget:
    left: int
    limit: int

    def spend(self, n: int, where: str) -> None:
        self.left -= n
        if self.left < 0:
            raise Refused(
                "decompression-limit",
                where,
                f"decompresses to more than {self.limit} bytes; the guard cannot check it",
            )


class _JsonShape:
    """A streaming JSON-ish tokenizer: one object-key mask per open object, nothing else.

    It does not validate JSON; it finds object keys (a string followed by ':') in any text,
    so JSON lines, arrays, pretty-printed or minified dumps and JSON inside CSV all count."""

    def __init__(self) -> None:
        self.stack: list[int] = []  # -1 for an array, else the key mask of an object
        self.in_string = False
        self.escape = False
        self.string = bytearray()
        self.string_long = False
        self.pending_key: bytes | None = None

    def feed(self, data: bytes) -> bool:
        """Consume `data`; True as soon as a submission-shaped object has been seen."""
        pos = self._finish_string(data) if self.in_string else 0
        if self.in_string:
            return False
        # One regex step per token: whole strings are matched in C (the hot path).
        for token in FAST_TOKEN.finditer(data, pos):
            start = token.start()
            char = data[start]
            if char == 0x22:  # a string: complete, or running on into the next chunk
                close = token.group(1)
                if close == b'"':
                    inner = token.end() - start - 2
                    self.pending_key = (
                        data[start + 1 : token.end() - 1] if inner <= MAX_KEY else None
                    )
                    continue
                self.in_string, self.string_long = True, False
                self.string.clear()
                self._take(data[start + 1 : token.end() - len(close)])
                if close:  # a backslash at the very end: its escaped byte comes next
                    self._take(close)
                    self.escape = True
                return False
            key, self.pending_key = self.pending_key, None
            if char == 0x3A:  # :
                if key is not None and self.stack and self.stack[-1] >= 0:
                    bit = KEY_BITS.get(_unescape(key), 0)
                    if bit:
                        self.stack[-1] |= bit
                        if _submission_mask(self.stack[-1]):
                            return True
            elif char == 0x7B:  # {
                self.stack.append(0)
            elif char == 0x5B:  # [
                self.stack.append(-1)
            elif self.stack:  # } or ]
                self.stack.pop()
        return False

    def _finish_string(self, data: bytes) -> int:
        """Continue a string begun in an earlier chunk; the position after it (or the end)."""
        pos, end = 0, len(data)
        while pos < end:
            if self.escape:
                self._take(data[pos : pos + 1])
                self.escape = False
                pos += 1
                continue
            stop = STRING_STOP.search(data, pos)
            if stop is None:
                self._take(data[pos:])
                return end
            self._take(data[pos : stop.start()])
            pos = stop.end()
            if data[stop.start()] == 0x5C:  # backslash
                self._take(b"\\")
                self.escape = True
                continue
            self.in_string = False
            self.pending_key = None if self.string_long else bytes(self.string)
            return pos
        return end

    def _take(self, piece: bytes) -> None:
        if self.string_long:
            return
        if len(self.string) + len(piece) > MAX_KEY:
            self.string_long = True
            self.string.clear()
        else:
            self.string += piece


def _unescape(raw: bytes) -> bytes:
    if b"\\" not in raw:
        return raw
    try:
        return json.loads(b'"' + raw + b'"').encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        return raw


class _Prefixed(io.RawIOBase):
    """A read-only stream that first returns `head`, then the rest of `rest`."""

    def __init__(self, head: bytes, rest, on_read: Callable[[int], None] | None = None) -> None:
        self.head, self.rest, self.on_read = head, rest, on_read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n] = self.head[:n]
            self.head = self.head[n:]
        else:
            data = self.rest.read(len(buffer))
            n = len(data)
            buffer[:n] = data
        if self.on_read and n:
            self.on_read(n)
        return n


class Scanner:
    """Scan files against the rules above. `lookup(ids) -> seen ids` (None: no docId rule)."""

    def __init__(
        self,
        lookup: Callable[[set[str]], set[str]] | None,
        *,
        max_expanded_bytes: int = 1024**3,
        max_depth: int = 4,
    ) -> None:
        self.lookup = lookup
        self.max_expanded_bytes = max_expanded_bytes
        self.max_depth = max_depth

    def scan_file(self, path: Path, label: str) -> None:
        """Raise Refused when the file at `path` (a private copy) breaks a rule."""
        budget = _Budget(self.max_expanded_bytes, self.max_expanded_bytes)
        with open(path, "rb") as handle:
            self._scan(handle, label, 0, budget, path=path)

    # -- layers ---------------------------------------------------------------------------
    def _scan(self, stream, label: str, depth: int, budget: _Budget, path: Path | None = None):
        head = _read_full(stream, 512)
        kind = _kind(head)
        if kind is None:
            self._scan_plain(_Prefixed(head, stream), label)
            return
        if depth >= self.max_depth:
            raise Refused(
                "nesting-limit", label, f"archives nested deeper than {self.max_depth} levels"
            )
        where = f"{label} ({kind})"
        try:
            if kind == "zip":
                self._scan_zip(head, stream, label, depth, budget, path)
            elif kind == "tar":
                self._scan_tar(_Prefixed(head, stream), label, depth, budget)
            else:
                inner = _decompressor(kind, _Prefixed(head, stream))
                counted = _Prefixed(b"", inner, lambda n: budget.spend(n, where))
                self._scan(
                    io.BufferedReader(counted, CHUNK),
                    label + f" > {kind} content",
                    depth + 1,
                    budget,
                )
        except Refused:
            raise
        except (
            OSError,
            EOFError,
            zlib.error,
            lzma.LZMAError,
            tarfile.TarError,
            zipfile.BadZipFile,
            NotImplementedError,
            RuntimeError,
            ValueError,
        ) as exc:
            raise Refused(
                "unreadable", where, f"cannot be read to the end ({exc}); the guard cannot check it"
            ) from exc

    def _scan_tar(self, stream, label: str, depth: int, budget: _Budget) -> None:
        with tarfile.open(fileobj=io.BufferedReader(stream, CHUNK), mode="r|") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                inner = archive.extractfile(member)
                if inner is not None:
                    self._scan(inner, f"{label} > {member.name}", depth + 1, budget)

    def _scan_zip(self, head, stream, label, depth, budget, path) -> None:
        with tempfile.TemporaryFile() as spill:
            if path is None:  # nested: zip needs seeking, so spill it (counted) to disk
                budget.spend(len(head), label)
                spill.write(head)
                while chunk := stream.read(CHUNK):
                    budget.spend(len(chunk), label)
                    spill.write(chunk)
                spill.seek(0)
                source = spill
            else:
                source = open(path, "rb")  # noqa: SIM115 - closed below
            try:
                with zipfile.ZipFile(source) as archive:
                    for info in archive.infolist():
                        if info.is_dir():
                            continue
                        if info.flag_bits & 0x1:
                            raise Refused(
                                "unreadable",
                                f"{label} > {info.filename}",
                                "is encrypted; the guard cannot check it",
                            )
                        where = f"{label} > {info.filename}"
                        with archive.open(info) as member:
                            counted = _Prefixed(b"", member, lambda n, w=where: budget.spend(n, w))
                            self._scan(io.BufferedReader(counted, CHUNK), where, depth + 1, budget)
            finally:
                if source is not spill:
                    source.close()

    # -- the rules on plain bytes -----------------------------------------------------------
    def _scan_plain(self, stream, label: str) -> None:
        shape = _JsonShape()
        ids: dict[str, int] = {}
        carry = b""
        offset = 0  # absolute offset of `carry`'s first byte
        while True:
            chunk = stream.read(CHUNK)
            if not chunk:
                break
            if shape.feed(chunk):
                raise Refused(
                    "submission-json",
                    f"{label}, object ending before byte {offset + len(carry) + len(chunk)}",
                    "contains a raw telemetry submission (a JSON object with info and histograms, or payload and clientId/environment); publish aggregates only",
                )
            window = carry + chunk
            hit = SPOOL_RECORD.search(window)
            if hit:
                raise Refused(
                    "spool-record",
                    f"{label}, byte {offset + hit.start()}",
                    "contains raw telemetry records (a spool/batch record, TPR1 magic)",
                )
            for start, doc_id in _uuids(window):
                if _raw_line_at(window, start, start + 36):
                    raise Refused(
                        "raw-record-line",
                        f"{label}, byte {offset + start}",
                        "contains raw telemetry records (a docId<TAB>json line); publish aggregates only",
                    )
                if self.lookup is not None:
                    ids.setdefault(doc_id, offset + start)
            if len(ids) >= LOOKUP_BATCH:
                self._check_ids(ids, label)
                ids.clear()
            keep = min(OVERLAP, len(window))
            offset += len(window) - keep
            carry = window[-keep:] if keep else b""
        if ids:
            self._check_ids(ids, label)

    def _check_ids(self, ids: dict[str, int], label: str) -> None:
        seen = self.lookup(set(ids) | {d.lower() for d in ids}) if self.lookup else set()
        for doc_id, at in sorted(ids.items(), key=lambda item: item[1]):
            if doc_id in seen or doc_id.lower() in seen:
                raise Refused(
                    "docid-seen",
                    f"{label}, byte {at}",
                    f"contains docId {doc_id} of a raw telemetry submission the pipeline received",
                )


def _uuids(window: bytes):
    """(start, text) of every UUID-shaped run in `window`, even inside a longer word: a docId
    glued to other characters is still that docId."""
    for match in UUID_TAIL.finditer(window):
        start, end = match.start() - 8, match.end()
        if start >= 0 and all(b in HEX for b in window[start : match.start()]):
            yield start, window[start:end].decode()


def _raw_line_at(window: bytes, start: int, end: int) -> bool:
    """True when the UUID at window[start:end] starts a line and JSON follows it."""
    line_start = max(window.rfind(b"\n", 0, start), window.rfind(b"\r", 0, start)) + 1
    if window[line_start:start].strip(b" \t\"'"):
        return False
    return RAW_LINE_AFTER.match(window, end) is not None


def _read_full(stream, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        piece = stream.read(n - got)
        if not piece:
            break
        parts.append(piece)
        got += len(piece)
    return b"".join(parts)


def _kind(head: bytes) -> str | None:
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(BZ2_MAGIC) and len(head) > 3 and head[3:4].isdigit():
        return "bz2"
    if head.startswith(XZ_MAGIC):
        return "xz"
    if head.startswith(LZ4_MAGIC):
        return "lz4"
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    return None


def _decompressor(kind: str, raw):
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw)
    if kind == "bz2":
        return bz2.BZ2File(raw)
    if kind == "xz":
        return lzma.LZMAFile(raw)
    import lz4.frame

    return lz4.frame.LZ4FrameFile(raw)
