"""Which namespaces and document types are published: what Firefox sends, plus additions.

The generic URL form `/submit/<namespace>/<docType>/<docVersion>/<docId>` lets any client
name any namespace and document type, and each distinct pair used to become a partition of its
own (one open file, one stats row per hour): 20,000 made-up doc types took a worker to 3.7 GB.
Only pairs on the allow-list are published; the others go to `errors/unknown_namespace` with
the raw record, where a person can look at them and, after adding the pair, replay them
(`python -m convert replay --reason unknown_namespace`).

The built-in list is what a real Firefox desktop sends: the legacy `telemetry` namespace (its
doc types are the `reason` dimension, which the schema already folds into OTHER) and the Glean
pings of `firefox-desktop`. `TELEMETRY_ALLOWED_DOC_TYPES` adds pairs: a comma- or
space-separated list of `namespace/docType`, or `namespace/*` for every doc type of a
namespace (their stats are then counted under the doc type OTHER, to keep the table small).
Convert decides with it what to publish; ingest's hourly counts use it for their labels.
"""

from __future__ import annotations

import dataclasses
import re

from pipeline.errors import ConfigError
from pipeline.layout import OTHER

SETTING = "TELEMETRY_ALLOWED_DOC_TYPES"
ANY = "*"

#: Glean pings a Firefox desktop sends to `/submit/firefox-desktop/<ping>/1/<docId>`.
FIREFOX_DESKTOP_PINGS = (
    "background-update",
    "baseline",
    "bounce-tracking-protection",
    "broken-site-report",
    "context-id-deletion-request",
    "crash",
    "dau-reporting",
    "deletion-request",
    "events",
    "first-startup",
    "fog-validation",
    "heartbeat",
    "messaging-system",
    "metrics",
    "newtab",
    "newtab-content",
    "nimbus-targeting-context",
    "onboarding-opt-out",
    "pageload",
    "profiles",
    "prototype-no-code-events",
    "pseudo-main",
    "quick-suggest",
    "quick-suggest-deletion-request",
    "search-with",
    "serp-categorization",
    "spoc",
    "sync",
    "top-sites",
    "urlbar-events",
    "usage-deletion-request",
    "usage-reporting",
    "use-counters",
    "user-characteristics",
)

DEFAULT_ENTRIES = ("telemetry/*", *(f"firefox-desktop/{ping}" for ping in FIREFOX_DESKTOP_PINGS))

_ENTRY = re.compile(r"^[A-Za-z0-9_.-]+/(?:\*|[A-Za-z0-9_.-]+)$")


@dataclasses.dataclass(frozen=True)
class AllowList:
    """Allowed (namespace, docType) pairs; `namespace/*` allows every doc type of one."""

    pairs: frozenset[tuple[str, str]]
    whole_namespaces: frozenset[str]

    @classmethod
    def parse(cls, extra: str = "", defaults: tuple[str, ...] = DEFAULT_ENTRIES) -> AllowList:
        """The built-in entries plus `extra` (the setting's text); ConfigError when malformed."""
        pairs: set[tuple[str, str]] = set()
        namespaces: set[str] = set()
        for entry in (*defaults, *re.split(r"[,\s]+", extra.strip())):
            if not entry:
                continue
            if not _ENTRY.match(entry):
                raise ConfigError(
                    SETTING,
                    f"{entry!r} is not namespace/docType or namespace/* (letters, digits, _ . -)",
                )
            namespace, doc_type = entry.split("/")
            if doc_type == ANY:
                namespaces.add(namespace)
            else:
                pairs.add((namespace, doc_type))
        return cls(frozenset(pairs), frozenset(namespaces))

    def allows(self, namespace: str, doc_type: str) -> bool:
        return namespace in self.whole_namespaces or (namespace, doc_type) in self.pairs

    def stats_label(self, namespace: str, doc_type: str) -> str:
        """The doc type as a stats label: listed ones by name, the rest as OTHER."""
        return doc_type if (namespace, doc_type) in self.pairs else OTHER
