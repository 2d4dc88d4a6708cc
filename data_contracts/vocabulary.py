"""Allowed values shared by the contracts, the simulator and the importers."""

from __future__ import annotations

from functools import cache

CHANNELS: tuple[str, ...] = ("call", "sms", "email", "letter")
# Channels a debtor can opt out of (a letter is the legal channel of last resort).
OPT_OUT_CHANNELS: tuple[str, ...] = ("call", "sms", "email")
DIRECTIONS: tuple[str, ...] = ("outbound", "inbound")
OUTCOMES: tuple[str, ...] = (
    "no_answer",
    "voicemail",
    "wrong_party",
    "right_party_contact",
    "promise_to_pay",
    "refused",
    "dispute",
    "delivered",
    "opened",
    "clicked",
    "bounced",
    "opted_out",
)

# Which outcomes each channel can produce. A reply to an SMS or an email counts as a
# conversation (right_party_contact and what follows from it); a letter can only be
# delivered, come back (bounced) or be disputed in writing.
OUTCOMES_BY_CHANNEL: dict[str, frozenset[str]] = {
    "call": frozenset(
        {
            "no_answer",
            "voicemail",
            "wrong_party",
            "right_party_contact",
            "promise_to_pay",
            "refused",
            "dispute",
            "opted_out",
        }
    ),
    "sms": frozenset(
        {
            "delivered",
            "clicked",
            "bounced",
            "right_party_contact",
            "promise_to_pay",
            "refused",
            "dispute",
            "opted_out",
        }
    ),
    "email": frozenset(
        {
            "delivered",
            "opened",
            "clicked",
            "bounced",
            "right_party_contact",
            "promise_to_pay",
            "refused",
            "dispute",
            "opted_out",
        }
    ),
    "letter": frozenset({"delivered", "bounced", "dispute"}),
}

# Outcomes that mean the debtor was reached (a conversation took place, or the debtor engaged).
CONVERSATION_OUTCOMES: frozenset[str] = frozenset(
    {"right_party_contact", "promise_to_pay", "refused", "dispute", "opted_out"}
)
TELEPHONE_CONVERSATIONS: frozenset[str] = CONVERSATION_OUTCOMES
"""Outcomes of a call that count as a telephone conversation about the debt (Regulation F):
no call for `conversation_gap_days` after one."""
RESPONSE_OUTCOMES: frozenset[str] = CONVERSATION_OUTCOMES | {"clicked"}
"""Outcomes that count as a right-party contact: the debtor was reached and engaged (a
conversation, a reply, a click). An `opened` email is not engagement (mail clients open
messages on their own), nor is a delivery."""
NOT_REACHED_OUTCOMES: frozenset[str] = frozenset(
    {"no_answer", "voicemail", "wrong_party", "bounced"}
)
"""Outcomes where the contact did not get through to the debtor, so an offer in it could not
matter; every other outcome got through."""

OFFER_KINDS: tuple[str, ...] = ("discount", "payment_plan")
PAYMENT_METHODS: tuple[str, ...] = (
    "card",
    "bank_transfer",
    "direct_debit",
    "cash",
    "check",
    "digital_wallet",
    "other",
)
PRODUCTS: tuple[str, ...] = (
    "credit_card",
    "personal_loan",
    "auto_loan",
    "student_loan",
    "mortgage",
    "retail_card",
    "telecom",
    "utility",
    "medical",
    "other",
)
ACCOUNT_EVENT_KINDS: tuple[str, ...] = (
    "settled",
    "paid_in_full",
    "recalled",
    "sold",
    "legal",
    "placed_elsewhere",
    "bankrupt",
    "deceased",
    "reopened",
)
"""What can happen to an account as a whole. `legal` (sent to an attorney or to court) and
`placed_elsewhere` (moved to another agency) are apart because the first may come back with a
judgment and is subject to other rules, while the second is simply no longer ours."""
REOPENING_EVENT_KINDS: frozenset[str] = frozenset({"reopened"})
"""Kinds that open a closed account again (a settlement reversed, a recall undone)."""
CLOSING_EVENT_KINDS: frozenset[str] = frozenset(ACCOUNT_EVENT_KINDS) - REOPENING_EVENT_KINDS
"""Kinds that close an account: it is then neither scored nor worked until reopened."""
AGE_BANDS: tuple[str, ...] = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
GENDERS: tuple[str, ...] = ("female", "male", "other")


@cache
def iana_timezones() -> frozenset[str]:
    """All IANA time zone names known to this Python (from the tz database)."""
    import zoneinfo

    return frozenset(zoneinfo.available_timezones())
