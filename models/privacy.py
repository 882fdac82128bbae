"""Personal data handling: customer identities are only ever kept as a keyed hash.

The hash is HMAC-SHA256 with a site secret, so equal customers still match (repeat-contact FCR)
while the value cannot be reversed by hashing every phone number without the key. Hashing is
idempotent: an already hashed value (our prefix) passes unchanged, so dead-lettered events, whose
personal data was replaced by the hash, can be repaired and replayed.
"""

from __future__ import annotations

import hashlib
import hmac
import re

HASH_PREFIX = "fwh1:"


class MissingHashKey(RuntimeError):
    """Raised (not a validation error: a configuration fault) when no hashing key was given."""


def hash_customer_ref(value: str, key: bytes | str | None) -> str:
    if value.startswith(HASH_PREFIX):
        return value
    if not key:
        raise MissingHashKey(
            "customer_ref needs privacy.customer_hash_key to be set (env FLOORWATCH_PRIVACY__CUSTOMER_HASH_KEY)")
    if isinstance(key, str):
        key = key.encode()
    digest = hmac.new(key, value.strip().lower().encode(), hashlib.sha256).hexdigest()
    return HASH_PREFIX + digest[:32]


# Personal data can also hide where the contract does not expect it (a malformed event, a field
# under the wrong name). Before bytes reach the dead-letter topic we hash every `customer_ref`
# value we can find and mask what looks like an e-mail address or an international phone
# number. Plain digit runs are left alone: they are far more often ids and dates than phones.
_EMAIL = re.compile(rb"[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})+")
_PHONE = re.compile(rb"\+\d[\d ()./-]{5,}\d")
_REF_IN_TEXT = re.compile(rb'("customer_ref"\s*:\s*")([^"]*)("?)')
REDACTED = b"<redacted>"


def mask_text(raw: bytes) -> bytes:
    """Mask e-mail addresses and +-prefixed phone numbers in arbitrary bytes."""
    return _PHONE.sub(REDACTED, _EMAIL.sub(REDACTED, raw))


def redact_json_value(value: object, key: bytes | str) -> object:
    """Return `value` (parsed JSON) with customer_ref hashed and e-mails/phones masked in strings."""
    if isinstance(value, dict):
        return {k: (hash_customer_ref(v, key) if k == "customer_ref" and isinstance(v, str) and v
                    else redact_json_value(v, key)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_json_value(v, key) for v in value]
    if isinstance(value, str) and ("@" in value or "+" in value):
        return mask_text(value.encode()).decode()
    return value


def redact_text(raw: bytes, key: bytes | str) -> bytes:
    """Redact bytes that are not parseable JSON: hash a readable customer_ref, then mask the rest."""
    def _hash(match: re.Match[bytes]) -> bytes:
        complete = match.group(3) == b'"'
        value = match.group(2).decode(errors="replace")
        replaced = hash_customer_ref(value, key).encode() if complete and value else REDACTED
        return match.group(1) + replaced + match.group(3)
    return mask_text(_REF_IN_TEXT.sub(_hash, raw))
