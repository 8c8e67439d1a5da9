"""Development signing keys for the CDS Client side (``keys`` and ``hook`` commands).

A deployment is checked end to end the way an EHR calls it: the service trusts a JWK Set for an
issuer, and the client signs with the matching private key. These keys are for development and
tests; production EHRs use their own.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from joserfc.jwk import ECKey, RSAKey, import_key

ALGORITHMS = ("ES384", "RS384")
PRIVATE_NAME = "private.pem"
JWKS_NAME = "jwks.json"

SigningKey = ECKey | RSAKey


@dataclass(frozen=True)
class KeyFiles:
    private: Path
    jwks: Path
    kid: str
    alg: str


def generate(out: Path, alg: str = "ES384", kid: str | None = None, force: bool = False) -> KeyFiles:
    """Write ``private.pem`` (mode 0600) and ``jwks.json`` (public key, kid, alg, use=sig) into ``out``.

    The kid defaults to the key's RFC 7638 thumbprint, so ``hook`` can find it from the PEM alone.
    """
    if alg not in ALGORITHMS:
        raise ValueError(f"alg must be one of {', '.join(ALGORITHMS)}")
    private, jwks = out / PRIVATE_NAME, out / JWKS_NAME
    if not force and (private.exists() or jwks.exists()):
        raise FileExistsError(f"{private} or {jwks} already exists (use --force to replace them)")
    key: SigningKey = ECKey.generate_key("P-384", private=True) if alg == "ES384" else RSAKey.generate_key(2048, private=True)
    kid = kid or key.thumbprint()
    public = {**key.as_dict(private=False), "kid": kid, "alg": alg, "use": "sig"}
    out.mkdir(parents=True, exist_ok=True)
    private.unlink(missing_ok=True)
    # Created 0600 from the start: a chmod afterwards would leave a moment where others can read it.
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.as_pem(private=True))
    jwks.write_text(json.dumps({"keys": [public]}, indent=2) + "\n", encoding="utf-8")
    return KeyFiles(private, jwks, kid, alg)


def load_private(path: Path) -> tuple[SigningKey, str]:
    """The private key in a PEM file and the algorithm it signs with (EC P-384: ES384, RSA: RS384)."""
    data = path.read_bytes()
    candidates: tuple[tuple[Literal["EC", "RSA"], str], ...] = (("EC", "ES384"), ("RSA", "RS384"))
    for kty, alg in candidates:
        try:
            key = import_key(data, kty)
        except Exception:  # joserfc/cryptography raise several types for "not this kind of key"
            continue
        if key.is_private and (kty == "RSA" or key.as_dict().get("crv") == "P-384"):
            return key, alg
    raise ValueError(f"{path}: expected a private EC P-384 or RSA key in PEM")
