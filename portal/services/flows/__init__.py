"""Automations ("flows"): retention messages that send themselves each day, measured against their own control group.

``kinds`` names the flows and their defaults, ``rules`` says who each one names on a day, ``runner`` enters
them (exactly once per episode) and sends through the campaigns' outbox, ``guards`` holds the monthly
budget, ``results`` compares messaged with control customers, ``replies`` counts unread inbound replies.
"""
