"""The customer page's "how far to the next reward" reads the next tier's lowest spend with one index seek
(services/customers/floors.py); these check it is the same bar as the tiers' own ``tier_floors``."""

from datetime import datetime, timezone
from decimal import Decimal

from portal.services.customers import floors
from portal.services.scores import tiers

SCORED = datetime(2026, 10, 1, tzinfo=timezone.utc)


def _tiered(make_customer, store, tier, monetary, **extra):
    return make_customer(store, tier=tier, monetary=Decimal(monetary), frequency=6, scored_at=SCORED, **extra)


def test_next_tier_floor_is_the_lowest_current_member_of_the_tier_above(db, make_store, make_customer):
    store = make_store()
    _tiered(make_customer, store, "Gold", "2500")
    _tiered(make_customer, store, "Gold", "2100.50")
    _tiered(make_customer, store, "Gold", "50", erased_at=SCORED)  # erased: not a member any more
    _tiered(make_customer, store, "Platinum", "9000")
    silver = _tiered(make_customer, store, "Silver", "900")
    bronze = _tiered(make_customer, store, "Bronze", "300")  # nobody in Silver but the one above
    top = _tiered(make_customer, store, "Platinum", "7000")
    none = make_customer(store, monetary=Decimal("10"))

    assert floors.next_tier_floor(silver) == {"Gold": 2100.5} == {"Gold": tiers.tier_floors()["Gold"]}
    assert floors.next_tier_floor(bronze) == {"Silver": 900.0}
    assert floors.next_tier_floor(top) is None and floors.next_tier_floor(none) is None
    silver.tier = "Bronze"
    db.session.commit()
    assert floors.next_tier_floor(bronze) == {}  # the tier above has no member: no bar to name


def test_customer_page_names_the_gap_to_the_next_tier(client, db, login_as, make_store, make_customer):
    store = make_store()
    _tiered(make_customer, store, "Gold", "2100.50")
    _tiered(make_customer, store, "Gold", "2500")
    silver = _tiered(make_customer, store, "Silver", "900")
    login_as("admin")
    html = client.get(f"/customers/{silver.id}").get_data(as_text=True)
    gap = Decimal(str(tiers.tier_floors()["Gold"])) - silver.monetary
    assert gap == Decimal("1200.50")
    assert "Spend $1,200.50 more to reach Gold" in html
