"""Write the example export in `dialer-ledger/`: a CRM, a dialer and a payments ledger, as an
agency's systems would hold them (their own column names, codes, local times and cents).

The rows come from the cobranza simulator (seed 7, 100 accounts, one year), so the example is
synthetic: no real person is in it. Run from the repository root to regenerate the files:

    .venv/bin/python examples/mappings/make_dialer_ledger.py
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from simulator import SimulationConfig, simulate_portfolio

FOLDER = Path(__file__).with_name("dialer-ledger")
DIALER_ZONE = "America/Chicago"  # the dialer logs wall-clock times of the agency's office
CHANNEL = {"call": "VOICE", "sms": "SMS", "email": "EMAIL", "letter": "MAIL"}
DISPOSITION = {
    "no_answer": "NA",
    "voicemail": "AM",
    "wrong_party": "WN",
    "right_party_contact": "RPC",
    "promise_to_pay": "PTP",
    "refused": "RTP",
    "dispute": "DSP",
    "delivered": "DLV",
    "opened": "OPN",
    "clicked": "CLK",
    "bounced": "BNC",
    "opted_out": "DNC",
}
TENDER = {
    "card": "CARD",
    "bank_transfer": "ACH",
    "direct_debit": "DD",
    "cash": "CASH",
    "check": "CHK",
    "digital_wallet": "WALLET",
    "other": "OTH",
}
SEX = {"female": "F", "male": "M", "other": "O"}


def _us_date(stamps: pd.Series) -> pd.Series:
    """The dialer's wall-clock time of the office, US style."""
    return stamps.dt.tz_convert(DIALER_ZONE).dt.strftime("%m/%d/%Y %H:%M:%S")


def _utc(stamps: pd.Series) -> pd.Series:
    """The CRM's naive UTC date-times."""
    return stamps.dt.strftime("%Y-%m-%d %H:%M:%S")


def export(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The four files of the export, from contract tables."""
    debtors, accounts = tables["debtors"], tables["accounts"]
    contacts, payments = tables["contacts"], tables["payments"]
    return {
        "crm_debtors.csv": pd.DataFrame(
            {
                "cust_ref": debtors["debtor_id"],
                "state": debtors["region"],
                "tz": debtors["timezone"],
                "age_group": debtors["age_band"],
                "sex": debtors["gender"].astype(object).map(SEX),
            }
        ),
        "crm_accounts.csv": pd.DataFrame(
            {
                "acct": accounts["account_id"],
                "cust_ref": accounts["debtor_id"],
                "product": accounts["product"],
                "placed_cents": (accounts["original_balance"] * 100).round().astype("int64"),
                "balance_cents": (accounts["current_balance"] * 100).round().astype("int64"),
                "opened": _utc(accounts["opened_at"]),
                "first_missed": _utc(accounts["delinquent_since"]),
                "charged_off": _utc(accounts["charged_off_at"]),
                "placed": _utc(accounts["placed_at"]),
                "dpd_at_placement": accounts["days_past_due_at_placement"],
                "client": accounts["creditor"],
            }
        ),
        "dialer_calls.csv": pd.DataFrame(
            {
                "call_id": contacts["contact_id"],
                "acct": contacts["account_id"],
                "channel": contacts["channel"].astype(object).map(CHANNEL),
                "inbound": (contacts["direction"] == "inbound").map({True: "Y", False: "N"}),
                "started": _us_date(contacts["attempted_at"]),
                "disposition": contacts["outcome"].astype(object).map(DISPOSITION),
            }
        ),
        "ledger.csv": pd.DataFrame(
            {
                "txn_id": payments["payment_id"],
                "acct": payments["account_id"],
                "posted_utc": payments["paid_at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "amount_cents": (payments["amount"] * 100).round().astype("int64"),
                "tender": payments["method"].astype(object).map(TENDER),
            }
        ),
    }


def main() -> None:
    simulated = simulate_portfolio(SimulationConfig(accounts=100, seed=7))
    FOLDER.mkdir(exist_ok=True)
    for name, frame in export(simulated.tables).items():
        frame.to_csv(FOLDER / name, index=False)


if __name__ == "__main__":
    main()
