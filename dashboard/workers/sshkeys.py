"""SSH public key validation by parsing the key, not by looking at its prefix."""

from __future__ import annotations

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_ssh_public_key

from dashboard.errors import SSHKeyError


def normalise_ssh_public_key(text: str) -> str:
    """Return the key as one canonical `type base64 [comment]` line, or raise SSHKeyError."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        raise SSHKeyError("Paste your SSH public key.")
    if "PRIVATE KEY" in text:
        raise SSHKeyError(
            "This is a private key. Paste the .pub file instead, and keep the private key secret."
        )
    if len(lines) > 1:
        raise SSHKeyError("Paste exactly one public key (one line).")
    parts = lines[0].split(None, 2)
    try:
        key = load_ssh_public_key(" ".join(parts[:2]).encode("ascii"))
    except (ValueError, UnsupportedAlgorithm, UnicodeEncodeError) as exc:
        raise SSHKeyError(
            "This is not a valid OpenSSH public key (expected e.g. 'ssh-ed25519 AAAA… you@host')."
        ) from exc
    canonical = key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode("ascii")
    comment = parts[2] if len(parts) > 2 else ""
    if any(ch in comment for ch in "\r\n\0"):
        comment = ""
    return f"{canonical} {comment}".strip()
