"""Parse Histograms.json files of any age into bucket layouts.

Files from 2013 write some numbers as C++ constants or arithmetic (`"80 + 1"`,
`"JS::gcreason::NUM_TELEMETRY_REASONS"`); newer ones add `keyed`, `labels` and more kinds. One
bad definition must not make a whole revision unusable, so each problem is recorded in
`Definitions.errors` as `(name, reason)` and the remaining histograms stay available.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from histograms.buckets import KIND_CODES, layout_for, parameters_for
from histograms.errors import DefinitionError, ExpressionError

#: C++ constants seen in old Histograms.json files, with their values in the 2013 sources.
#: Their values changed between versions, so definitions that use one are marked `symbolic`
#: and conversion accepts the layout the client actually reports when it is self-consistent.
CPP_CONSTANTS: dict[str, int] = {
    # js/public/GCAPI.h: "100 is conservative"; the old server's 101 contradicts real payloads.
    "JS::gcreason::NUM_TELEMETRY_REASONS": 100,
    "mozilla::StartupTimeline::MAX_EVENT_ID": 12,
}

#: Prefix Firefox gave the copies of histograms recorded during start-up; they share the
#: definition of the histogram without the prefix.
STARTUP_PREFIX = "STARTUP_"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*")


@dataclasses.dataclass(frozen=True)
class HistogramDefinition:
    """One histogram's layout; `buckets` are the lower bounds, underflow bucket 0 included."""

    name: str
    kind: str
    low: int
    high: int
    bucket_count: int
    keyed: bool
    buckets: tuple[int, ...]
    labels: tuple[str, ...] = ()
    symbolic: bool = False  # a field came from a C++ constant whose value varies by version

    @property
    def kind_code(self) -> int:
        """The `histogram_type` a payload carries for this kind."""
        return KIND_CODES[self.kind]


def evaluate_number(value: object) -> tuple[int, bool]:
    """Return (integer, used_constant) for a JSON number or C++ integer expression string."""
    if isinstance(value, bool):
        raise ExpressionError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value, False
    if isinstance(value, float) and value.is_integer():
        return int(value), False
    if not isinstance(value, str):
        raise ExpressionError(f"expected an integer, got {value!r}")
    used_constant = False

    def substitute(match: re.Match) -> str:
        nonlocal used_constant
        name = match.group(0)
        if name not in CPP_CONSTANTS:
            raise ExpressionError(f"unknown C++ constant {name!r} in {value!r}")
        used_constant = True
        return str(CPP_CONSTANTS[name])

    text = _IDENTIFIER.sub(substitute, value)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"cannot parse {value!r} as integer arithmetic") from exc
    return _evaluate(tree.body, value), used_constant


def _evaluate(node: ast.AST, source: str) -> int:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = _evaluate(node.operand, source)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp):
        left, right = _evaluate(node.left, source), _evaluate(node.right, source)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        if isinstance(node.op, ast.Div | ast.FloorDiv) and right != 0:
            return int(left / right)  # C integer division truncates toward zero
    raise ExpressionError(f"unsupported integer expression {source!r}")


def parse_definition(name: str, raw: object) -> HistogramDefinition:
    """Build one definition; raises ValueError with a reason a person can act on."""
    if not isinstance(raw, dict):
        raise ValueError("definition is not a JSON object")
    kind = raw.get("kind")
    if kind not in KIND_CODES:
        raise ValueError(f"unknown kind {kind!r} (expected one of {', '.join(sorted(KIND_CODES))})")
    symbolic = False
    numbers: dict[str, int | None] = {}
    for field in ("low", "high", "n_buckets", "n_values"):
        if raw.get(field) is None:
            numbers[field] = None
            continue
        try:
            numbers[field], used = evaluate_number(raw[field])
        except ExpressionError as exc:
            raise ValueError(f"{field}: {exc}") from None
        symbolic = symbolic or used
    keyed = raw.get("keyed", False)
    if not isinstance(keyed, bool):
        raise ValueError(f"keyed must be true or false, got {keyed!r}")
    low = numbers["low"] if numbers["low"] is not None else 1
    low, high, bucket_count = parameters_for(
        kind, raw, numbers["n_values"], low, numbers["high"], numbers["n_buckets"]
    )
    labels = tuple(raw.get("labels") or ()) if kind == "categorical" else ()
    return HistogramDefinition(
        name=name,
        kind=kind,
        low=low,
        high=high,
        bucket_count=bucket_count,
        keyed=keyed,
        buckets=layout_for(kind, low, high, bucket_count),
        labels=labels,
        symbolic=symbolic,
    )


class Definitions(Mapping):
    """Read-only mapping name -> HistogramDefinition of one Histograms.json revision.

    `lookup(name)` also resolves the `STARTUP_` copies Firefox sent for start-up histograms.
    `errors` lists `(name, reason)` for definitions that could not be understood.
    """

    def __init__(
        self, definitions: dict[str, HistogramDefinition], errors: list[tuple[str, str]]
    ) -> None:
        self._definitions = definitions
        self.errors = errors
        self._specs: dict | None = None

    def __getitem__(self, name: str) -> HistogramDefinition:
        return self._definitions[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._definitions)

    def __len__(self) -> int:
        return len(self._definitions)

    def lookup(self, name: str) -> HistogramDefinition | None:
        """The definition for a histogram name as it appears in a payload, or None."""
        found = self._definitions.get(name)
        if found is None and name.startswith(STARTUP_PREFIX):
            found = self._definitions.get(name[len(STARTUP_PREFIX) :])
        return found

    @property
    def specs(self) -> dict:
        """Per-name conversion specs for the hot loop (built once, then shared)."""
        if self._specs is None:
            from histograms.spec import build_spec

            self._specs = {
                name: build_spec(definition) for name, definition in self._definitions.items()
            }
        return self._specs


def load_definitions(source: str | Path | bytes) -> Definitions:
    """Parse a Histograms.json given as a path, or as its bytes / text content.

    A `str` that does not start with `{` is taken as a path.
    """
    if isinstance(source, Path) or (
        isinstance(source, str) and not source.lstrip().startswith("{")
    ):
        path = Path(source)
        try:
            source = path.read_bytes()
        except OSError as exc:
            raise DefinitionError(f"cannot read {path}: {exc}") from exc
    try:
        table = json.loads(source)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DefinitionError(f"Histograms.json is not valid JSON: {exc}") from exc
    if not isinstance(table, dict):
        raise DefinitionError("Histograms.json must be a JSON object of histogram definitions")
    definitions: dict[str, HistogramDefinition] = {}
    errors: list[tuple[str, str]] = []
    for name, raw in table.items():
        try:
            definitions[name] = parse_definition(name, raw)
        except ValueError as exc:
            errors.append((name, str(exc)))
    return Definitions(definitions, errors)
