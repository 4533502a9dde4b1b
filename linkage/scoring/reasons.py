"""The reasons: each cluster's evidence, verdicts and usage as plain sentences with numbers.

An analyst's verdict leads (a cleared false positive, then confirmed operators), then the
evidence, strongest first, then what the cluster's size damps, then its usage.
"""

from __future__ import annotations

import numpy as np

from linkage.reports.glossary import signal_name
from linkage.scoring.features import family_of

__all__ = ["cluster_reasons", "duration", "evidence_reasons", "fleet_reason", "noun",
           "usage_reason"]

# What a reason counts for the signals whose keys are not the values themselves (MinHash
# bands, minutes, moments); every other signal's keys are named as in the glossary.
_KEY_UNITS = {
    "prompt": ("MinHash band of near-identical prompt-template sets",
               "MinHash bands of near-identical prompt-template sets"),
    "activity_sync": ("MinHash band of near-identical activity schedules",
                      "MinHash bands of near-identical activity schedules"),
    "prompt_sync": ("minute of synchronised use of one prompt template",
                    "minutes of synchronised use of one prompt template"),
    "coactivity": ("moment of activity on one observed value",
                   "moments of activity on one observed value"),
}


def cluster_reasons(
    base: dict[str, np.ndarray],
    shared: dict[int, list[tuple[str, int, int]]],
    ip_ranges: dict[int, int],
    damp: np.ndarray,
    damp_household: np.ndarray,
    strong_edge: float,
    known: tuple[np.ndarray, list[str]],
    usage: dict[int, dict[str, float]],
    suppressed: dict[int, tuple[str, bool]],
) -> list[list[str]]:
    """The reasons of every cluster of ``base`` (:func:`evidence_reasons`), led by an
    analyst's verdicts: ``suppressed`` as :func:`linkage.scoring.verdicts.false_positives`
    gives it, then ``known``, the confirmed operators' count and text per cluster
    (:func:`linkage.scoring.verdicts.known_bad`); the cluster's ``usage``
    (:func:`linkage.scoring.usage.cluster_usage`) comes last."""
    size = base["size"].astype(np.int64)
    sizes = size.tolist()
    damps = np.asarray(damp, dtype=np.float64).tolist()
    damps_h = np.asarray(damp_household, dtype=np.float64).tolist()
    count, text = known
    out = []
    for c in range(len(base["cluster"])):
        reasons = evidence_reasons(c, sizes[c], base, shared.get(c, []), ip_ranges.get(c, 0),
                                   damps[c], damps_h[c], strong_edge)
        if count[c]:
            reasons.insert(0, f"{int(count[c])} of {int(size[c])} accounts were confirmed "
                              f"operators {text[c]}")
        if c in usage:
            reasons.append(usage_reason(usage[c]))
        if c in suppressed:
            reasons.insert(0, suppressed[c][0])  # an analyst's verdict leads, before any evidence
        out.append(reasons)
    return out


def fleet_reason(share: float, weight: float, fleet_size: int) -> str:
    """Why a cluster not flagged on its own evidence is flagged: it is a piece of a flagged
    cluster's fleet (:func:`linkage.campaigns.fleet_pieces`)."""
    return (f"a piece of a flagged cluster of {fleet_size} accounts: {share:.0%} of its "
            f"members' evidence ({weight:.1f}) ties them to it")


def evidence_reasons(
    c: int,
    size: int,
    base: dict[str, np.ndarray],
    signals: list[tuple[str, int, int]],
    n_ranges: int,
    damp: float,
    damp_household: float,
    strong_edge: float,
) -> list[str]:
    """Cluster ``c``'s evidence as sentences, strongest first, then what its size damps.

    ``base`` holds the columns of :func:`linkage.scoring.aggregates.cluster_aggregates`,
    ``signals`` the cluster's shared keys per signal (``(signal, keys, members carrying
    one)``), ``n_ranges`` the IP ranges its members used, ``damp`` and ``damp_household``
    its two size factors, ``strong_edge`` the weight of a strong link."""
    out: list[tuple[float, str]] = []
    for sig, n_keys, cov in signals:
        if sig == "cosignup":
            continue  # said better by the signup burst sentence below
        count = "one" if n_keys == 1 else str(n_keys)
        strength = 1.0 if family_of(sig) in ("identifier", "behaviour") else 0.5
        out.append((strength * cov / size,
                    f"{cov} of {size} accounts share {count} {noun(sig, n_keys)}"))
    burst_n = int(np.nan_to_num(base["burst_n"][c]))
    if burst_n >= 3 and burst_n / size >= 0.5:
        text = (f"{burst_n} of {size} signed up within "
                f"{duration(float(base['burst_span'][c]))}")
        if n_ranges:
            # Every range its accounts used, shared or not: said so, so that it does not
            # read as a contradiction of "N of M accounts share K IP ranges".
            text += (f"; all its accounts together used {n_ranges} IP "
                     f"range{'s' if n_ranges != 1 else ''}")
        out.append((0.9 * burst_n / size, text))
    n_strong = int(base["n_strong"][c])
    if n_strong:
        out.append((0.1, f"{n_strong} of {size} have at least one strong link "
                         f"(evidence >= {strong_edge:g})"))
    out.sort(key=lambda t: -t[0])
    reasons = [t for _, t in out]
    if damp_household < 1.0:
        reasons.append(f"small cluster ({size} accounts): identifiers and networks, which "
                       f"households share too, count {damp_household:.0%}, other evidence "
                       f"{damp:.0%}")
    return reasons


def usage_reason(u: dict[str, float]) -> str:
    """E.g. "31 accounts sent 1.2M requests (48M tokens) in 41.9 days, 88% coding/agentic,
    93% of each account's requests in its two busiest hours of the day, 95% on one model;
    24 of them share 140 private prompt templates"."""
    def big(x: float) -> str:
        return next((f"{x / d:.1f}{unit}" for d, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k"))
                     if x >= d), f"{x:.0f}")

    tokens = u["input_tokens"] + u["output_tokens"]
    text = (f"{u['usage_accounts']:.0f} accounts sent {big(u['requests'])} requests "
            f"({big(tokens)} tokens) in {u['usage_days']:.1f} days, "
            f"{u['coding_agentic_share']:.0%} coding/agentic, "
            f"{u['timing_regularity']:.0%} of each account's requests in its two busiest hours "
            f"of the day, {u['model_concentration']:.0%} on one model")
    if u["private_templates"]:
        n = int(u["private_templates"])
        text += (f"; {u['template_sharers']:.0f} of them share {n} private prompt "
                 f"template{'s' if n != 1 else ''}")
    if u.get("category_departure", 0.0) > 0:
        text += (f"; {u['category_departure']:.0%} of them ask for other kinds of request "
                 "than the average account does")
    return text


def noun(signal: str, k: int) -> str:
    """The name of what a signal's keys are, for ``k`` of them: "card" or "cards"."""
    if signal.startswith("obs:"):
        kind = signal[4:].replace("_", " ")
        return f"{kind} value" if k == 1 else f"{kind} values"
    if signal in _KEY_UNITS:
        return _KEY_UNITS[signal][0 if k == 1 else 1]
    return signal_name(signal, plural=k != 1)


def duration(seconds: float) -> str:
    """A span of seconds in words, to the unit that reads best: "38 minutes".

    Examples
    --------
    >>> duration(45), duration(2280), duration(9000), duration(300000)
    ('45 seconds', '38 minutes', '2.5 hours', '3.5 days')
    """
    if seconds < 120:
        return f"{max(seconds, 0):.0f} seconds"
    if seconds < 7200:
        return f"{seconds / 60:.0f} minutes"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 86400:.1f} days"
