"""Phone numbers of recipients: E.164 form and line type (mobile, landline, …) of a stored phone.

A campaign messages only valid mobile-capable numbers (landlines are excluded, DESIGN.md: SMS
consent). ``phonenumbers`` answers that, but its type check costs ~60 µs a number; the
importer stores E.164, so :func:`phone_type` takes a precompiled fast path for E.164 input
that gives the library's own answer (tests compare the two on random numbers) and leaves
anything else to the library.
"""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberType

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")

_SPECIAL_TYPES = (
    ("premium_rate", PhoneNumberType.PREMIUM_RATE),
    ("toll_free", PhoneNumberType.TOLL_FREE),
    ("shared_cost", PhoneNumberType.SHARED_COST),
    ("voip", PhoneNumberType.VOIP),
    ("personal_number", PhoneNumberType.PERSONAL_NUMBER),
    ("pager", PhoneNumberType.PAGER),
    ("uan", PhoneNumberType.UAN),
    ("voicemail", PhoneNumberType.VOICEMAIL),
)
_plans: dict[int, tuple] = {}


def _desc(desc):
    """(possible lengths, compiled pattern) of a PhoneNumberDesc; None when it matches nothing."""
    if desc is None or not desc.national_number_pattern:
        return None
    return frozenset(desc.possible_length or ()), re.compile(desc.national_number_pattern)


def _matches(national: str, desc) -> bool:
    """phonenumbers' _is_number_matching_desc on a precompiled (lengths, pattern) pair."""
    if desc is None:
        return False
    lengths, pattern = desc
    if lengths and len(national) not in lengths:
        return False
    return pattern.fullmatch(national) is not None


def _plan(md) -> tuple:
    plan = _plans.get(id(md))
    if plan is None:
        special = tuple((d, kind) for name, kind in _SPECIAL_TYPES if (d := _desc(getattr(md, name))) is not None)
        plan = _plans[id(md)] = (
            _desc(md.general_desc),
            special,
            _desc(md.fixed_line),
            _desc(md.mobile),
            bool(md.same_mobile_and_fixed_line_pattern),
            md,
        )
    return plan


def _type_for(national: str, md) -> int:
    """phonenumbers' _number_type_helper: the same checks in the same order, precompiled.

    (The library's own helper costs ~60 µs a number, too slow for a 100k-recipient outbox.)
    """
    general, special, fixed, mobile, same, _ = _plan(md)
    if not _matches(national, general):
        return PhoneNumberType.UNKNOWN
    for desc, kind in special:
        if _matches(national, desc):
            return kind
    if _matches(national, fixed):
        if same or _matches(national, mobile):
            return PhoneNumberType.FIXED_LINE_OR_MOBILE
        return PhoneNumberType.FIXED_LINE
    if not same and _matches(national, mobile):
        return PhoneNumberType.MOBILE
    return PhoneNumberType.UNKNOWN


def _slow_phone_type(phone: str, region: str) -> tuple[str | None, int]:
    """The library's own answer (non-E.164 input, or E.164 with a trunk prefix it tolerates)."""
    try:
        parsed = phonenumbers.parse(phone, region or "US")
    except phonenumbers.NumberParseException:
        return None, PhoneNumberType.UNKNOWN
    if not phonenumbers.is_valid_number(parsed):
        return None, PhoneNumberType.UNKNOWN
    return (phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164), phonenumbers.number_type(parsed))


def phone_type(phone: str | None, region: str = "US") -> tuple[str | None, int]:
    """(E.164 number, phonenumbers.PhoneNumberType) of a stored phone; (None, UNKNOWN) when invalid.

    E.164 input (what the importer stores) takes a fast path that gives the same answer as
    ``phonenumbers`` (tests compare them on random numbers); anything else, or an E.164 string
    the fast path rejects, is left to phonenumbers with the store's region.
    """
    if not phone:
        return None, PhoneNumberType.UNKNOWN
    phone = phone.strip()
    if _E164.match(phone):
        found = _fast_e164(phone)
        if found[0] is not None:
            return found
    return _slow_phone_type(phone, region)


_CC_CACHE: dict[str, tuple] = {}


def _calling_code(digits: str) -> tuple:
    """(length of the country calling code, [(region, metadata)]) for the digits after '+'."""
    key = digits[:3]
    found = _CC_CACHE.get(key)
    if found is None:
        found = (0, ())
        for size in (1, 2, 3):  # country calling codes are prefix-free
            regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(int(digits[:size]))
            if regions:
                metas = tuple(
                    (
                        r,
                        PhoneMetadata.metadata_for_nongeo_region(int(digits[:size]), None)
                        if r == "001"
                        else PhoneMetadata.metadata_for_region(r, None),
                    )
                    for r in regions
                )
                found = (size, tuple((r, md) for r, md in metas if md is not None))
                break
        _CC_CACHE[key] = found
    return found


def _fast_e164(phone: str) -> tuple[str | None, int]:
    digits = phone[1:]
    size, regions = _calling_code(digits)
    if not size:
        return None, PhoneNumberType.UNKNOWN
    national = digits[size:]
    for region_code, md in regions:  # phonenumbers' _region_code_for_number_from_list
        if md.leading_digits is not None and region_code != "001":
            if not re.match(md.leading_digits, national):
                continue
        kind = _type_for(national, md)
        if kind != PhoneNumberType.UNKNOWN or md.leading_digits is not None or region_code == "001":
            return (phone, kind) if kind != PhoneNumberType.UNKNOWN else (None, kind)
    return None, PhoneNumberType.UNKNOWN
