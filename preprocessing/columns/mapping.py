"""Mapping a file's headers onto our fields: known layouts, exact names, then synonyms.

Recognises the original system's columns, UCI Online Retail and CDNOW-style files by their headers;
``missing_required`` names what a mapping still lacks and ``apply_overrides`` takes the manager's
corrections from the preview page.
"""

from __future__ import annotations

import re

KINDS = ("transactions", "stock", "customers")

# Our fields per kind, in the order they are matched (earlier fields claim ambiguous headers first).
# Synonyms are compared after lower-casing and removing spaces, underscores, hyphens, dots and '#'.
SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "transactions": {
        "transaction_id": (
            "transactionid",
            "invoiceno",
            "invoice",
            "invoiceid",
            "invoicenumber",
            "orderid",
            "order",
            "orderno",
            "ordernumber",
            "receipt",
            "receiptno",
            "receiptid",
            "receiptnumber",
            "basketid",
            "ticket",
            "ticketid",
            "txnid",
            "saleid",
            "transaction",
        ),
        "customer_id": (
            "customerid",
            "customer",
            "client",
            "clientid",
            "memberid",
            "member",
            "customerno",
            "customernumber",
            "custid",
            "loyaltyid",
            "loyaltynumber",
            "accountid",
        ),
        "purchase_date": (
            "purchasedate",
            "date",
            "orderdate",
            "invoicedate",
            "transactiondate",
            "timestamp",
            "datetime",
            "saledate",
            "purchasetime",
            "purchasedat",
            "createdat",
            "time",
        ),
        "product_id": (
            "productid",
            "sku",
            "itemcode",
            "stockcode",
            "productcode",
            "itemid",
            "articleid",
            "articleno",
            "barcode",
            "ean",
            "upc",
            "itemno",
            "itemnumber",
        ),
        "product_name": (
            "productname",
            "description",
            "product",
            "itemname",
            "itemdescription",
            "item",
            "article",
            "productdescription",
            "title",
            "name",
        ),
        "quantity": ("quantity", "qty", "units", "unitssold", "quantitysold", "pieces"),
        "price_per_unit": ("priceperunit", "unitprice", "price", "itemprice", "priceeach", "sellingprice"),
        "total_amount": (
            "totalamount",
            "amount",
            "total",
            "linetotal",
            "lineamount",
            "totalprice",
            "sales",
            "revenue",
            "value",
            "linevalue",
            "netamount",
        ),
        "phone": (
            "mobile",
            "phone",
            "cell",
            "phonenumber",
            "mobilenumber",
            "mobilephone",
            "cellphone",
            "msisdn",
            "tel",
            "telephone",
        ),
        "store": ("store", "storename", "shop", "branch", "location", "storeid", "outlet"),
        "coupon_code": ("couponcode", "coupon", "promocode", "promo", "voucher", "vouchercode", "discountcode"),
    },
    "stock": {
        "product_id": (
            "productid",
            "sku",
            "itemcode",
            "stockcode",
            "productcode",
            "itemid",
            "articleid",
            "barcode",
            "ean",
            "upc",
        ),
        "product_name": ("productname", "description", "product", "itemname", "item", "name", "title"),
        "initial_stock": (
            "initialstock",
            "openingstock",
            "stockreceived",
            "received",
            "quantityreceived",
            "purchasedqty",
            "stockin",
            "initialquantity",
            "stock",
        ),
        "total_sold": ("totalsold", "sold", "unitssold", "qtysold", "quantitysold", "sales"),
        "price": ("price", "unitprice", "priceperunit", "sellingprice", "retailprice"),
        "store": ("store", "storename", "shop", "branch", "location", "storeid"),
    },
    "customers": {
        "customer_id": (
            "customerid",
            "customer",
            "client",
            "clientid",
            "memberid",
            "member",
            "customerno",
            "customernumber",
            "custid",
            "loyaltyid",
            "id",
        ),
        "name": ("name", "fullname", "customername", "clientname"),
        "first_name": ("firstname", "givenname", "forename", "first"),
        "last_name": ("lastname", "surname", "familyname", "last"),
        "phone": (
            "phone",
            "mobile",
            "cell",
            "phonenumber",
            "mobilenumber",
            "mobilephone",
            "cellphone",
            "msisdn",
            "tel",
            "telephone",
        ),
        "email": ("email", "emailaddress", "mail", "email1"),
        "store": ("store", "storename", "shop", "branch", "homestore", "location", "storeid"),
        "sms_consent": ("smsconsent", "smsoptin", "consent", "optin", "marketingconsent", "smsmarketing"),
        "sms_consent_date": ("smsconsentdate", "consentdate", "optindate", "smsoptindate", "consentedat"),
        "birthday": ("birthday", "birthdate", "dateofbirth", "dob", "bday"),
    },
}

# Named layouts: the normalised headers that must all be present.
LAYOUTS: dict[str, tuple[str, frozenset[str]]] = {
    "loyalist": (
        "transactions",
        frozenset(
            {
                "customerid",
                "transactionid",
                "purchasedate",
                "productid",
                "productname",
                "quantity",
                "priceperunit",
                "totalamount",
            }
        ),
    ),
    "uci_online_retail": (
        "transactions",
        frozenset({"invoiceno", "stockcode", "description", "quantity", "invoicedate", "unitprice", "customerid"}),
    ),
    "cdnow": ("transactions", frozenset({"customer", "date", "quantity", "amount"})),
}

# Required fields: each entry is a set of alternatives, one of which must be mapped.
REQUIRED: dict[str, list[tuple[str, ...]]] = {
    "transactions": [
        ("purchase_date",),
        ("quantity",),
        ("price_per_unit", "total_amount"),
        ("transaction_id", "customer_id"),
    ],
    "stock": [("product_id", "product_name"), ("initial_stock",), ("total_sold",)],
    "customers": [("customer_id",)],
}


class Mapping(dict):
    """Our field -> the file's header, plus the ``kind`` and the detected ``layout`` name."""

    def __init__(self, fields: dict[str, str] | None = None, kind: str = "transactions", layout: str = "generic"):
        super().__init__(fields or {})
        self.kind = kind
        self.layout = layout

    def __repr__(self) -> str:
        return f"Mapping({dict(self)!r}, kind={self.kind!r}, layout={self.layout!r})"


def _norm(header: str) -> str:
    return re.sub(r"[\s_\-.#/]+", "", str(header).casefold())


def detect_mapping(headers: list[str], kind: str) -> Mapping:
    """Map a file's headers onto our fields by layout, then exact name, then synonyms.

    Matching ignores case, spaces, underscores, hyphens and dots; each header is used once.
    The layout is 'loyalist', 'uci_online_retail', 'cdnow' or 'generic'.
    """
    if kind not in SYNONYMS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    normalised = {}
    for h in headers:
        normalised.setdefault(_norm(h), h)
    layout = "generic"
    for name, (layout_kind, needed) in LAYOUTS.items():
        if layout_kind == kind and needed <= normalised.keys():
            layout = name
            break
    fields: dict[str, str] = {}
    used: set[str] = set()
    for target, synonyms in SYNONYMS[kind].items():
        for candidate in (_norm(target), *synonyms):
            header = normalised.get(candidate)
            if header is not None and header not in used:
                fields[target] = header
                used.add(header)
                break
    return Mapping(fields, kind=kind, layout=layout)


def missing_required(mapping: dict, kind: str) -> list[str]:
    """Names of required fields (or alternatives, 'a or b') that the mapping lacks; empty when complete.

    For transactions a product column is required unless ``total_amount`` is mapped (CDNOW-style
    files have no product: their lines get product_id 'UNKNOWN').
    """
    missing = [" or ".join(alts) for alts in REQUIRED[kind] if not any(a in mapping for a in alts)]
    if kind == "transactions" and not ({"product_id", "product_name", "total_amount"} & mapping.keys()):
        missing.append("product_id or product_name")
    return missing


def apply_overrides(mapping: Mapping, headers: list[str], overrides: dict[str, str]) -> Mapping:
    """A copy of ``mapping`` corrected by the manager: {source header: field}; field '' unmaps the header.

    Raises:
        ValueError: an unknown header or field (the message names it).
    """
    fields = dict(mapping)
    known = SYNONYMS[mapping.kind]
    for source, target in overrides.items():
        if source not in headers:
            raise ValueError(f"The file has no column {source!r}.")
        fields = {f: s for f, s in fields.items() if s != source}
        if target:
            if target not in known:
                raise ValueError(f"Unknown field {target!r}; expected one of: {', '.join(known)}.")
            fields[target] = source
    return Mapping(fields, kind=mapping.kind, layout=mapping.layout)
