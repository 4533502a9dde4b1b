"""Plain names for the store's keys, and the glossary every report links to.

The store keeps short machine names (``identifier_reuse``, ``bin_postal``, ``ip_net``): SQL,
exports and configuration use them and they do not change. What an analyst reads (the HTML
report, the case packet, ``linkage show``) goes through :func:`feature_name` and
:func:`signal_name`, one mapping for all of them. A name this module does not know (a new
feature, an observation kind) is shown with its underscores as spaces rather than hidden.

:data:`GLOSSARY` explains the words the pages use; the report writes it as
``glossary.html``, the case packet carries it at its end, and ``docs/glossary.md`` is
:func:`glossary_markdown` (``python -m linkage.reports.glossary > docs/glossary.md``).

Examples
--------
>>> feature_name("identifier_reuse")
'shared identifiers'
>>> signal_name("bin_postal"), signal_name("obs:url")
('BIN + billing postal code', 'observed url')
>>> feature_name("some_new_feature")
'some new feature'
>>> signal_phrase("device", 3)
'3 device fingerprints'
"""

from __future__ import annotations

__all__ = [
    "FEATURE_NAMES", "GLOSSARY", "SIGNAL_NAMES", "feature_name", "glossary_markdown",
    "signal_name", "signal_phrase",
]

# Scoring features (clusters.features_json, contributions_json): plain name.
FEATURE_NAMES: dict[str, str] = {
    "burst": "signup burst",
    "identifier_reuse": "shared identifiers",
    "issuer_reuse": "shared card issuer and postal code",
    "network_concentration": "shared network",
    "observation_reuse": "shared observed values",
    "behaviour_reuse": "shared prompt templates",
    "schedule_sync": "one activity schedule",
    "usage_campaign": "campaign-like usage",
    "known_bad": "confirmed by analysts",
    "density": "evidence density",
    "size_factor": "size factor",
    "household_factor": "household size factor",
}

# Signals (evidence_signals.signal, cluster_keys.signal): (singular, plural).
SIGNAL_NAMES: dict[str, tuple[str, str]] = {
    "card": ("card", "cards"),
    "bin_postal": ("BIN + billing postal code", "BIN + billing postal codes"),
    "device": ("device fingerprint", "device fingerprints"),
    "email": ("email address", "email addresses"),
    "phone": ("phone number", "phone numbers"),
    "ip": ("IP address", "IP addresses"),
    "ip_net": ("IP range (/24 or /64)", "IP ranges (/24 or /64)"),
    "ip_net48": ("IPv6 /48 range", "IPv6 /48 ranges"),
    "cosignup": ("signup at the same moment", "signups at the same moment"),
    "coactivity": ("activity at the same moment", "activities at the same moment"),
    "prompt": ("near-identical set of prompt templates", "near-identical sets of prompt templates"),
    "template": ("private prompt template", "private prompt templates"),
    "template_pool": ("pool of private prompt templates", "pools of private prompt templates"),
    "prompt_sync": ("template used in the same minute", "templates used in the same minute"),
    "activity_sync": ("near-identical activity schedule", "near-identical activity schedules"),
    "activity_group": ("group moving on one schedule", "groups moving on one schedule"),
}

# (term, meaning, machine names it covers): the glossary, in reading order.
GLOSSARY: list[tuple[str, str, str]] = [
    ("cluster", "A group of two or more accounts that the evidence ties together more "
     "tightly than to anyone else (Leiden communities on the account graph). Its id "
     "(c + 12 hex digits) stays the same from night to night while the group continues.",
     "cluster_id"),
    ("score", "How strongly the cluster looks like one operator's accounts, from 0 to 1: "
     "1 - Π(1 - contribution) over the features below, damped by the size factors, raised by "
     "analysts' confirmations.", "score"),
    ("flagged", "The score reached the run's threshold (scoring.threshold) and no analyst "
     "cleared the same group as a false positive.", "flagged"),
    ("verdict, label", "What an analyst recorded with linkage label: confirmed (operator "
     "accounts), false_positive (not one operator; the same group is not flagged again) or "
     "watch. Labels lead every cluster page.", "labels"),
    ("evidence edge, link", "Two accounts that share something. Its weight (0 to 1) is "
     "1 - Π(1 - p) over the signals they share; p is the signal's weight, lowered when the "
     "shared value is carried by many accounts.", "evidence.weight"),
    ("strong link", "An evidence edge of weight 0.6 or more (scoring.strong_edge): what one "
     "shared card or device fingerprint gives, or several weaker signals together.",
     "strong_edge"),
    ("signal", "A kind of shared value: a card, a device fingerprint, an IP address…",
     "evidence_signals.signal"),
    ("shared key", "A value (keyed hash, never the value itself) that two or more members "
     "carry. 'Most members on one key' is how many members carry the most shared one.",
     "cluster_keys"),
    ("campaign", "Flagged clusters that share more evidence with each other than chance "
     "predicts: pieces of one operator's fleet. Named after its oldest cluster.",
     "campaign_id"),
    ("related cluster", "Another cluster of the same run that shares at least one key with "
     "this one (keys carried by two or more members on each side), flagged or not. Its "
     "strength is what the strongest of those keys gives a pair of accounts: the signal's "
     "weight, lowered for the accounts of both clusters that carry it (an upper bound: "
     "accounts outside the two clusters may carry it too).", "cluster_keys"),
    ("origin", "How the cluster relates to the previous night: new, continued (same "
     "members), grown, shrunk, merged (from several earlier clusters) or split (from one).",
     "origin"),
    ("signup burst", "Share of the members created within a short time of each other "
     "(scoring.burst_window_minutes).", "burst"),
    ("shared identifiers", "Share of the members linked to each other by identifiers one "
     "person owns: cards, device fingerprints, email addresses, phone numbers (or a strong "
     "link made of several signals).", "identifier_reuse"),
    ("shared card issuer and postal code", "Share of the members linked by the same card "
     "BIN (issuer and range) with the same billing postal code.", "issuer_reuse"),
    ("shared network", "Share of the members linked by IP addresses and ranges.",
     "network_concentration"),
    ("shared observed values", "Share of the members linked by values of the input's "
     "observations table (URLs, user agents…), counted as far as no one else has them.",
     "observation_reuse"),
    ("shared prompt templates", "Share of the members linked by the same private prompt "
     "templates, template pools or synchronised use of one template, counted as far as "
     "those templates are most of their work.", "behaviour_reuse"),
    ("one activity schedule", "Share of the members active at the same moments as another "
     "member whatever they sent (the same ten-minute buckets), counted only where that "
     "overlap is beyond what chance predicts from how active each of them is and when.",
     "schedule_sync"),
    ("campaign-like usage", "How much the members' usage looks like a campaign: coding or "
     "agentic requests, at the same hours every day, in volume.", "usage_campaign"),
    ("confirmed by analysts", "Share of the members that analysts confirmed as operators.",
     "known_bad"),
    ("contribution", "A feature's part of the score: its weight times the feature "
     "(squared for the shares of members, so evidence that covers only part of the cluster "
     "counts little).", "contributions_json"),
    ("size factor", "Small clusters are damped: two accounts that share a card are weaker "
     "evidence of a fleet than thirty (scoring.full_size).", "size_factor"),
    ("household size factor", "What households share too (identifiers, card issuer and "
     "postal code, networks, observed values) is damped further, up to "
     "scoring.household_full_size: a family card shared by two households is what families "
     "do.", "household_factor"),
    ("evidence density", "How many of the possible pairs of members are linked, weighted.",
     "density"),
]


def feature_name(key: str) -> str:
    """The plain name of a scoring feature."""
    return FEATURE_NAMES.get(key, key.replace("_", " "))


def signal_name(signal: str, plural: bool = False) -> str:
    """The plain name of a signal (``obs:<kind>`` becomes ``observed <kind>``)."""
    if signal in SIGNAL_NAMES:
        return SIGNAL_NAMES[signal][1 if plural else 0]
    if signal.startswith("obs:"):
        return f"observed {signal[4:]}" + ("s" if plural else "")
    return signal.replace("_", " ")


def signal_phrase(signal: str, n: int) -> str:
    """``n`` keys of a signal in words: ``one card``, ``3 device fingerprints``."""
    return f"{'one' if n == 1 else n} {signal_name(signal, plural=n != 1)}"


def glossary_markdown() -> str:
    """``docs/glossary.md``: the glossary and the plain names of features and signals."""
    lines = [
        "# Glossary", "",
        "The words of the reports, the case packet and `linkage show`, and the machine names",
        "they stand for in the store, SQL and exports (generated from",
        "`linkage/reports/glossary.py`: `python -m linkage.reports.glossary > "
        "docs/glossary.md`).", "",
        "| term | meaning | in the store |", "|---|---|---|",
    ]
    lines += [f"| {t} | {m} | `{k}` |" for t, m, k in GLOSSARY]
    lines += ["", "## Signals", "", "| plain name | signal |", "|---|---|"]
    lines += [f"| {one} | `{key}` |" for key, (one, _) in SIGNAL_NAMES.items()]
    lines += ["| observed *kind* | `obs:<kind>` |", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(glossary_markdown(), end="")
