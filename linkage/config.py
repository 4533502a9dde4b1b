"""Typed run configuration, loaded from TOML and validated once.

One frozen dataclass per stage, assembled into :class:`RunConfig`. Every key has a default, so
an empty file (or no file) is a complete configuration. An unknown key or a value of the wrong
type is a :class:`~linkage.errors.ConfigError` that names the key by its dotted path. Each run
stores ``RunConfig.to_dict()`` and its hash, so any run can be reproduced later.

Examples
--------
>>> cfg = RunConfig.from_dict({"communities": {"resolution": 0.1}})
>>> cfg.communities.resolution
0.1
>>> RunConfig.from_dict({"communities": {"resolutoin": 0.1}})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
linkage.errors.ConfigError: unknown configuration key 'communities.resolutoin' (known: ...)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from linkage.errors import ConfigError

__all__ = [
    "ActivitySyncConfig",
    "CampaignsConfig",
    "CoactivityConfig",
    "CommunitiesConfig",
    "ContinuityConfig",
    "CosignupConfig",
    "EngineConfig",
    "GraphConfig",
    "IngestConfig",
    "ObservationConfig",
    "PromptConfig",
    "RunConfig",
    "ScoringConfig",
    "SignalConfig",
    "SignalsConfig",
    "StoreConfig",
    "TemplatePoolConfig",
    "load_config",
]

# Providers whose mailboxes ignore dots in the local part / everything after a '+'.
_DOT_BLIND = ("gmail.com", "googlemail.com")
_PLUS_TAGS = (
    "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "icloud.com",
    "me.com", "fastmail.com", "protonmail.com", "proton.me", "yandex.ru",
)


# The range of a key sits next to its field, as field metadata: what it must be, in words, and
# the test. :func:`_build` checks every key of a table it builds, and the table's own rules
# across keys (a ``rules`` method), naming the key by its dotted path.
def _must(what: str, ok: Callable[[Any], bool]) -> dict[str, tuple[str, Callable[[Any], bool]]]:
    return {"must": (what, ok)}


def _at_least(n: int) -> dict[str, tuple[str, Callable[[Any], bool]]]:
    return _must(f"at least {n}", lambda v: v >= n)


_WEIGHT = _must("in [0, 1)", lambda v: 0.0 <= v < 1.0)
_UNIT = _must("in [0, 1]", lambda v: 0.0 <= v <= 1.0)
_SHARE = _must("in (0, 1]", lambda v: 0.0 < v <= 1.0)
_POSITIVE = _must("positive", lambda v: v > 0)
_NON_NEGATIVE = _must("non-negative", lambda v: v >= 0)
_CAP = _at_least(2)
_COUNT = _at_least(1)

# A rule across keys, from a table's ``rules(at)`` (``at``: the table's dotted path): (holds,
# the key's name in its table, what it must be, its value).
Rule = tuple[bool, str, str, Any]


@dataclass(frozen=True)
class IngestConfig:
    """How input is read, validated and normalised."""

    on_bad_rows: Literal["fail", "quarantine"] = "fail"
    """``fail``: any contract violation stops the run before anything is written.
    ``quarantine``: row-level violations set the row aside and are counted; file-level ones
    (missing table or column, unreadable file) still fail."""
    quarantine_sample: int = field(default=1000, metadata=_NON_NEGATIVE)
    """How many quarantined rows the run keeps (with reason and shortened value)."""
    max_reported_problems: int = 50
    """How many problems an input error lists before it says "and N more"."""
    max_field_chars: int = field(default=10_000, metadata=_at_least(64))
    """Longest text value accepted in any column; a longer one is a row-level problem (a
    runaway export or a hostile file must not reach the hash functions and the graph)."""
    max_line_bytes: int = field(default=2_097_152, metadata=_at_least(1024))
    """Longest CSV line accepted, in bytes; a longer one stops the run with an error naming
    the file and line (a file without newlines must not be read into memory whole)."""
    email_ignore_dots: tuple[str, ...] = _DOT_BLIND
    email_ignore_plus: tuple[str, ...] = _PLUS_TAGS
    email_domain_aliases: dict[str, str] = field(
        default_factory=lambda: {"googlemail.com": "gmail.com"}
    )


@dataclass(frozen=True)
class SignalConfig:
    """An exact-value or range signal: accounts that share a key of this kind are linked.

    A key shared by ``n`` accounts gives each pair the evidence
    ``weight * clamp(log(cap / n) / log(cap / 2), 0, 1)``: full at two accounts, falling
    linearly in ``log n``, zero at ``cap`` accounts and above.
    """

    weight: float = field(metadata=_WEIGHT)
    cap: int = field(default=200, metadata=_CAP)
    enabled: bool = True
    min_shared: int = field(default=1, metadata=_COUNT)
    """A pair that shares fewer keys of this signal gets no evidence from it (prompt
    templates: one shared template is a coincidence, several are a pipeline)."""


@dataclass(frozen=True)
class CosignupConfig:
    """Co-signup: accounts created within ``window_minutes`` of each other that share a weak
    key (a signup network range, a card BIN, a user agent)."""

    weight: float = field(default=0.4, metadata=_WEIGHT)
    cap: int = field(default=200, metadata=_CAP)
    enabled: bool = True
    window_minutes: int = field(default=30, metadata=_POSITIVE)
    weak_keys: tuple[str, ...] = ("signup_net",)
    """``signup_net``, ``bin``, ``user_agent``. Only the signup range by default: a bank's BIN
    or a browser's user agent is shared by so many signups in any half hour that they add
    most of the graph's pairs, weak ones, for no measured gain (docs/configuration.md)."""

    def rules(self, at: str) -> Iterator[Rule]:
        known = {"signup_net", "bin", "user_agent"}
        for k in self.weak_keys:
            yield k in known, "weak_keys", f"a subset of {sorted(known)}", k


@dataclass(frozen=True)
class SetBandsConfig:
    """What the two set-similarity signals share (:class:`PromptConfig`,
    :class:`ActivitySyncConfig`): each account's set is cut into ``bands`` MinHash-LSH keys
    of ``rows`` values each; a pair needs ``min_shared`` shared band keys, each a witness of
    ``weight * specificity(n, cap)``."""

    weight: float = field(default=0.35, metadata=_WEIGHT)
    cap: int = field(default=200, metadata=_CAP)
    enabled: bool = True
    min_shared: int = field(default=2, metadata=_COUNT)
    bands: int = field(default=20, metadata=_COUNT)
    rows: int = field(default=3, metadata=_COUNT)

    def rules(self, at: str) -> Iterator[Rule]:
        yield self.min_shared <= self.bands, "min_shared", f"at most {at}bands", self.min_shared


@dataclass(frozen=True)
class PromptConfig(SetBandsConfig):
    """Shared prompt templates, compared as sets: MinHash-LSH over each account's set of
    templates used by fewer than ``cap`` accounts (popular public templates are no evidence;
    its own unique templates count in the set). The ``bands * rows`` MinHash values are cut
    into ``bands`` keys of ``rows`` values each; two accounts whose template sets have Jaccard
    similarity ``J`` share a band key with probability ``J ** rows``. Each shared band key is a
    witness of ``weight * specificity(n, cap)`` (``n``: accounts with that band key); a pair
    needs ``min_shared`` of them. Only templates the account used at least ``min_uses``
    times are in its set (a pipeline reuses its templates; a person tries a public one once).
    Accounts with fewer than ``min_templates`` templates in their set get no band keys (a set
    of one or two templates says little)."""

    min_templates: int = field(default=5, metadata=_COUNT)
    min_uses: int = field(default=2, metadata=_COUNT)


@dataclass(frozen=True)
class TemplatePoolConfig(SetBandsConfig):
    """Private template pools: templates whose sets of *users* are nearly the same (MinHash-LSH
    over each template's set of accounts, ``bands`` keys of ``rows`` values; two templates
    sharing ``min_shared`` band keys are one pool's) form a pool; an account that uses at
    least ``min_used`` templates of a pool carries the pool's key. A pool's key is evidence
    however many accounts use it: a pipeline's accounts all draw from its pool, so its
    templates have the same users, while the users of popular public templates are random
    slices of everyone. ``cap`` is the population itself (no cap)."""

    weight: float = field(default=0.5, metadata=_WEIGHT)
    cap: int = field(default=2_000_000_000, metadata=_CAP)
    enabled: bool = True
    min_carriers: int = field(default=3, metadata=_COUNT)
    """Templates used by fewer accounts are not compared."""
    min_templates: int = field(default=3, metadata=_COUNT)
    """A pool has at least this many templates."""
    min_used: int = field(default=2, metadata=_COUNT)
    min_lift: float = field(default=2.0, metadata=_at_least(1))
    """Two templates are one pool's when they share at least this many times the users
    chance predicts from who their users are (``|A & B| >= min_lift (|B| S_A + |A| S_B) /
    2D``, ``S_A``: the templates A's users use in all, ``D``: everyone's; docs/algorithm.md)."""


@dataclass(frozen=True)
class ActivitySyncConfig(SetBandsConfig):
    """Synchronised activity whatever the template (SynchroTrap with MinHash-LSH): each
    account's *set* of active time buckets (``window_minutes`` wide, from
    ``interactions.ts``), compared like :class:`PromptConfig` compares template sets:
    ``bands`` keys of ``rows`` MinHash values each, for accounts active in at least
    ``min_buckets`` buckets. A pair's shared bands count only as far as they exceed the
    overlap chance predicts from both accounts' volumes (see ``docs/algorithm.md``)."""

    weight: float = field(default=0.3, metadata=_WEIGHT)
    cap: int = field(default=2_000_000_000, metadata=_CAP)
    """No cap: a band key is judged by the chance overlap of its pairs' schedules
    (:func:`linkage.graph.build_edges`), not by how many accounts share it."""
    bands: int = field(default=30, metadata=_COUNT)
    rows: int = field(default=2, metadata=_COUNT)
    """Sensitive bands (a pair of Jaccard 0.3 shares two of 30 three times in four): they
    only propose pairs, which the count of their shared buckets judges."""
    window_minutes: int = field(default=10, metadata=_COUNT)
    min_buckets: int = field(default=20, metadata=_COUNT)
    alpha: float = field(default=0.01, metadata=_must("in (0, 1)", lambda v: 0.0 < v < 1.0))
    """The chance that any of the pairs tested is linked by chance alone: a pair's shared
    buckets must be that unlikely under independence, divided among the pairs tested
    (Bonferroni)."""
    group_rounds: int = field(default=3, metadata=_NON_NEGATIVE)
    """Rounds of the group step: two accounts each synchronised beyond chance with a third
    are tested too (the bands rarely propose a pair of a big scheduler that each run a
    small share of its jobs); 0 tests only what the bands propose."""
    group_fanout: int = field(default=16, metadata=_COUNT)
    """In each round an account offers pairs among its this many strongest synchronised
    fellows, and takes at most this many new pairs from its fellows' offers (first those
    with most fellows in common): the tests grow with the accounts, not their squares."""


@dataclass(frozen=True)
class ActivityGroupConfig:
    """Schedule groups (:mod:`linkage.schedule_groups`): accounts whose activity moves
    together as a group beyond what chance predicts from each bucket's popularity, when no
    pair of them does (an operator who paraphrases every prompt, spreading one schedule's
    jobs over many accounts). Found on the even days and judged on the odd ones, and the
    other way round, in ``signals.activity_sync.window_minutes`` buckets; the accounts both
    ways keep share one key, each pair of them a witness of ``weight * specificity(n,
    cap)``."""

    weight: float = field(default=0.5, metadata=_WEIGHT)
    """Below ``graph.core_edge``: a group's pairs never make a strong core on this key alone,
    so operators that run one cron schedule are not merged into one cluster by it."""
    cap: int = field(default=2_000_000_000, metadata=_CAP)
    """No cap: a group is judged by its shared buckets against chance, not by its size."""
    enabled: bool = True
    min_buckets: int = field(default=20, metadata=_COUNT)
    """Accounts active in fewer buckets (over all the days) are not judged."""
    components: int = field(default=40, metadata=_COUNT)
    """Leading singular vectors of the residual from chance: the embedding's dimensions."""
    neighbours: int = field(default=10, metadata=_COUNT)
    """Nearest accounts in the embedding; mutual neighbours are candidate group members."""
    resolution: float = field(default=0.05, metadata=_POSITIVE)
    """CPM resolution of Leiden on the graph of mutual neighbours."""
    min_lift: float = field(default=4.0, metadata=_at_least(1))
    """A found group must share this many times the buckets chance predicts, on the days it
    was not found on ..."""
    min_z: float = field(default=5.0, metadata=_POSITIVE)
    """... and this many standard deviations (Poisson) above chance."""
    habit_minutes: int = field(default=180, metadata=_must(
        "a divisor of 1440", lambda v: v > 0 and 1440 % v == 0))
    """The slot of the day an account's habits are counted in: chance includes each
    member's own activity per slot of the day (a team at work in the same hours shares
    what its habits predict)."""


@dataclass(frozen=True)
class CoactivityConfig:
    """Co-activity (SynchroTrap): accounts that act on the same ``observations`` value (same
    kind) within ``window_minutes`` of each other: the same product reviewed on the same day,
    the same link posted in the same hour. Needs ``observations.seen_at``. Off by default: on
    account metadata, observations are attributes, not events."""

    weight: float = field(default=0.3, metadata=_WEIGHT)
    cap: int = field(default=50, metadata=_CAP)
    enabled: bool = False
    window_minutes: int = field(default=60, metadata=_POSITIVE)
    min_shared: int = field(default=1, metadata=_COUNT)
    """A pair with fewer shared keys (value and time bucket; one coincidence gives one key
    per bucket grid that sees it, so one or two) gets no evidence from this signal."""


@dataclass(frozen=True)
class ObservationConfig:
    """``observations`` rows: every kind is a signal; ``kinds`` overrides the weight per kind
    (0 disables a kind)."""

    weight: float = field(default=0.5, metadata=_WEIGHT)
    cap: int = field(default=200, metadata=_CAP)
    enabled: bool = True
    kinds: dict[str, float] = field(default_factory=dict)

    def rules(self, at: str) -> Iterator[Rule]:
        for kind, w in self.kinds.items():
            yield 0.0 <= w < 1.0, f"kinds.{kind}", "in [0, 1)", w


@dataclass(frozen=True)
class SignalsConfig:
    """One entry per signal kind (see ``docs/algorithm.md``)."""

    # A card fingerprint is one card and a device fingerprint one device: hundreds of
    # accounts on one is an operator, not a crowd (a company's corporate card is explained
    # by org_id), so their caps sit far above the network signals' (a campus NAT, a CGNAT).
    card: SignalConfig = SignalConfig(weight=0.9, cap=2000)
    device: SignalConfig = SignalConfig(weight=0.8, cap=1000)
    email: SignalConfig = SignalConfig(weight=0.95, cap=50)
    phone: SignalConfig = SignalConfig(weight=0.9, cap=50)
    ip: SignalConfig = SignalConfig(weight=0.5)
    ip_net: SignalConfig = SignalConfig(weight=0.2)
    ip_net48: SignalConfig = SignalConfig(weight=0.1)
    bin_postal: SignalConfig = SignalConfig(weight=0.3, cap=1000)
    cosignup: CosignupConfig = CosignupConfig()
    coactivity: CoactivityConfig = CoactivityConfig()
    # Usage: a private prompt template shared by a few accounts is an operator's pipeline; a
    # public one used by thousands is above the cap and says nothing. Each shared template
    # is weak alone; noisy-OR makes dozens of them strong.
    prompt: PromptConfig = PromptConfig()
    template: SignalConfig = SignalConfig(weight=0.3)
    template_pool: TemplatePoolConfig = TemplatePoolConfig()
    activity_sync: ActivitySyncConfig = ActivitySyncConfig()
    activity_group: ActivityGroupConfig = ActivityGroupConfig()
    # Six keys: at least three separate moments (one coincidence is seen by one or two grids).
    prompt_sync: CoactivityConfig = CoactivityConfig(weight=0.4, cap=50, enabled=True,
                                                     window_minutes=10, min_shared=6)
    observation: ObservationConfig = ObservationConfig()


@dataclass(frozen=True)
class GraphConfig:
    """How shared keys become edges."""

    clique_max: int = field(default=32, metadata=_at_least(2))
    """A key shared by at most this many accounts links every pair of them."""
    cohesion_min: int = field(default=8, metadata=_at_least(2))
    """A device or network key shared by more accounts than this (more than a household
    shares) counts as far as its carriers are tied to each other by independent evidence
    beyond chance (its cohesion), like every identifier key of more than ``clique_max``."""
    ring_degree: int = field(default=8, metadata=_COUNT)
    """A key shared by more accounts (up to the signal's cap) links each account only to its
    ``ring_degree`` successors in a fixed pseudo-random order: connected, linear in size."""
    min_edge_weight: float = 0.2
    """Edges at or below this weight are dropped before community detection: a pair whose
    only evidence is one weak coincidence (one shared IP range, one co-signup bucket, one
    popular BIN+postal code) is what ordinary neighbours share. The witness still counts
    wherever another one corroborates it (noisy-OR lifts the pair above the floor)."""
    suppress_org: bool = True
    """Drop all evidence between two accounts of the same ``org_id`` (a known legitimate
    group: a company's shared corporate card and office range must not flag it)."""


@dataclass(frozen=True)
class CommunitiesConfig:
    """Leiden community detection, run per connected component."""

    objective: Literal["cpm", "modularity"] = "cpm"
    resolution: float = field(default=0.05, metadata=_POSITIVE)
    """For CPM: the minimum weighted internal density a cluster must keep."""
    iterations: int = field(default=1, metadata=_must("non-zero (-1: until stable)",
                                                      lambda v: v != 0))
    beta: float = 0.01
    core_edge: float = field(default=0.6, metadata=_SHARE)
    """An edge at least this heavy is a strong link for the strong-core step."""
    core_min_size: int = field(default=8, metadata=_must("0 (off) or at least 3",
                                                         lambda v: v == 0 or v >= 3))
    """Accounts that strong links join into a connected 2-core of at least this many form one
    cluster whatever Leiden made of them (chain-like camouflage rings); 0 disables the step."""
    warm_start: bool = True
    """Keep the previous run's clusters in components that have not changed at all, and
    start Leiden from them elsewhere (accounts seen before keep their cluster, new accounts
    start alone), so a small change of input is a small change of clusters."""
    warm_min_gain: float = field(default=2.0, metadata=_NON_NEGATIVE)
    """With a warm start, a connected component keeps last run's clusters unless tonight's
    Leiden result is better by at least this much CPM quality (hysteresis: no renaming for
    marginal gains)."""


@dataclass(frozen=True)
class ScoringConfig:
    """Cluster score and the flagging threshold (see ``docs/algorithm.md``)."""

    threshold: float = field(default=0.5, metadata=_SHARE)
    full_size: int = field(default=10, metadata=_at_least(3))
    """Clusters of this size or more get the full size factor; smaller ones are damped so
    that a handful of accounts cannot reach the threshold on little evidence."""
    household_full_size: int = field(default=24, metadata=_at_least(3))
    """What households share too (cards, devices, emails, phones, BIN and postal codes,
    networks, observed values) gets its full weight only from this size: a family card
    shared by two households of four is what families do, not an operator."""
    burst_window_minutes: int = 120
    strong_edge: float = 0.6
    """An edge at least this heavy is a strong link: in the reasons ("12 of 14 have at least
    one strong link") and as a link of ``identifier_reuse`` (weaker signals that together
    make a strong edge tie accounts like a shared card does)."""
    weights: dict[str, float] = field(
        default_factory=lambda: {
            "burst": 0.45,
            "identifier_reuse": 0.75,
            "issuer_reuse": 0.3,
            "network_concentration": 0.3,
            "observation_reuse": 0.3,
            "behaviour_reuse": 0.75,
            "schedule_sync": 0.6,
            "usage_campaign": 0.4,
            "known_bad": 0.9,
        }
    )
    """Feature weights of the noisy-OR that combines features into the raw score."""
    suppress_min_jaccard: float = field(default=0.8, metadata=_SHARE)
    """A cluster marked ``false_positive`` is not flagged again while its members overlap the
    labelled members at least this much (Jaccard)."""

    def rules(self, at: str) -> Iterator[Rule]:
        known = sorted(ScoringConfig().weights)
        for name, w in self.weights.items():
            yield name in known, "weights", f"keys among {known}", name
            yield 0.0 <= w <= 1.0, f"weights.{name}", "in [0, 1]", w


@dataclass(frozen=True)
class ContinuityConfig:
    """Matching tonight's clusters to the previous run's."""

    min_jaccard: float = field(default=0.5, metadata=_SHARE)
    """A cluster keeps a previous id when their member sets overlap at least this much."""


@dataclass(frozen=True)
class CampaignsConfig:
    """Grouping flagged clusters into campaigns (``linkage.campaigns``)."""

    enabled: bool = True
    """Give flagged clusters a ``campaign_id``; ``false`` leaves every one NULL."""
    min_lift: float = field(default=2.0, metadata=_at_least(1))
    """Two flagged clusters join when the evidence between them is at least this many times
    what a degree-preserving null model expects (``k_i k_j / 2m``, as modularity does) and
    amounts to at least one strong edge (``scoring.strong_edge``); below 1 a join would lower
    modularity (less shared than chance predicts)."""


@dataclass(frozen=True)
class StoreConfig:
    """What a run keeps in the store."""

    evidence_min_score: float = field(default=0.4, metadata=_UNIT)
    """Evidence (intra-cluster edges with per-signal contributions, and shared keys) is kept
    for every flagged cluster and every cluster scoring at least this; memberships and
    scores for every cluster. At a
    million accounts most accounts sit in low-scoring neighbourhood clusters whose evidence
    would be most of the store's rows and write time; 0 keeps everything."""
    max_shrink: float = field(default=0.5, metadata=_UNIT)
    """A run whose input has fewer accounts than the latest published run's by more than this
    share is refused (exit 2) unless ``linkage run --allow-shrink``: a truncated export
    published as ``latest`` would dissolve every cluster. 1 turns the check off."""


@dataclass(frozen=True)
class SparkConfig:
    """The Spark engine (``engine.name = "spark"``; ``docs/operations.md``)."""

    master: str = "local[*]"
    """Spark master URL when linkage starts the session itself; under ``spark-submit``,
    spark-submit's ``--master`` holds."""
    conf: dict[str, str] = field(default_factory=dict)
    """Extra Spark settings (``spark.executor.memory`` ...) for a session linkage starts
    (not under ``spark-submit``, whose ``--conf`` settings hold). A local master gets
    ``spark.driver.memory = "4g"`` unless set here: its executors live in the driver's JVM,
    and Spark's own 1g runs out of heap at a few hundred thousand accounts."""
    staging: str = ""
    """Where Spark writes its intermediate tables (Parquet): a folder or URL every executor
    can reach (``hdfs://``, ``s3a://``). Empty: the run's private temporary folder, which
    only a local master can use."""
    buckets: int = field(default=32, metadata=_COUNT)
    """Connected components are hashed into this many groups, one Leiden task each."""
    max_rounds: int = field(default=60, metadata=_COUNT)
    """Connected components stop with an error if their pairs still change after this many
    rounds (large-star / small-star: O(log^2 n) rounds for n vertices, not more for longer
    paths; docs/configuration.md)."""


@dataclass(frozen=True)
class EngineConfig:
    """The relational engine."""

    name: Literal["duckdb", "spark"] = "duckdb"
    memory_limit: str = "1.5GB"
    """DuckDB memory limit such as ``"4GB"`` or ``"25%"`` (of RAM); empty: DuckDB's own
    default, 80% of RAM. Above it DuckDB spills to ``temp_directory`` and gets slower instead
    of failing (what the default costs: docs/configuration.md); DuckDB's own default keeps
    what it allows, which is most of a shared machine."""
    threads: int = 0
    """0: all cores."""
    temp_directory: str = ""
    spark: SparkConfig = SparkConfig()


@dataclass(frozen=True)
class RunConfig:
    """The whole configuration of a run."""

    seed: int = 42
    ingest: IngestConfig = IngestConfig()
    signals: SignalsConfig = SignalsConfig()
    graph: GraphConfig = GraphConfig()
    communities: CommunitiesConfig = CommunitiesConfig()
    scoring: ScoringConfig = ScoringConfig()
    continuity: ContinuityConfig = ContinuityConfig()
    campaigns: CampaignsConfig = CampaignsConfig()
    store: StoreConfig = StoreConfig()
    engine: EngineConfig = EngineConfig()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Build and validate a configuration from plain data (as parsed from TOML)."""
        cfg: RunConfig = _build(cls, data, "")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable form (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def hash(self) -> str:
        """A stable SHA-256 of the resolved configuration."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def load_config(path: Path | str | None) -> RunConfig:
    """Load a TOML configuration file; ``None`` gives the defaults."""
    if path is None:
        return RunConfig()
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {str(path)!r} is not valid TOML: {exc}") from None
    return RunConfig.from_dict(data)


def _build(cls: type, data: Any, prefix: str, base: Any = None) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"configuration key {prefix.rstrip('.') or '<root>'!r} must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields))
        raise ConfigError(f"unknown configuration key {prefix + unknown[0]!r} (known: {known})")
    values = {}
    for name, value in data.items():
        if dataclasses.is_dataclass(hints[name]):
            # A nested table overrides its defaults key by key, starting from this field's
            # own default ([signals.card] cap = 500 keeps the card's weight of 0.9).
            values[name] = _build(hints[name], value, f"{prefix}{name}.",
                                  base=_field_default(fields[name]))
        else:
            values[name] = _coerce(hints[name], value, prefix + name)
    for name, value in values.items():
        # A table-valued key (feature weights, per-kind weights) overrides the defaults one
        # entry at a time rather than replacing the whole table.
        default = fields[name].default_factory
        if isinstance(value, dict) and default is not dataclasses.MISSING:
            values[name] = {**default(), **value}
    if base is not None:
        return _checked(dataclasses.replace(base, **values), values, prefix)
    missing = [n for n, f in fields.items() if n not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"configuration table {prefix.rstrip('.') or '<root>'!r} needs "
                          f"the key {prefix + missing[0]!r}")
    return _checked(cls(**values), values, prefix)


def _checked(table: Any, given: dict[str, Any], prefix: str) -> Any:
    """``table`` once the keys given and its rules across keys hold (see :func:`_must`)."""
    for f in dataclasses.fields(table):
        if f.name in given and "must" in f.metadata:
            what, ok = f.metadata["must"]
            _need(ok(getattr(table, f.name)), prefix + f.name, what, getattr(table, f.name))
    for ok, name, what, value in getattr(table, "rules", lambda at: ())(prefix):
        _need(ok, prefix + name, what, value)
    return table


def _need(ok: bool, key: str, what: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"configuration key {key!r} must be {what}, not {value!r}")


def _field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(
                f"configuration key {key!r} must be one of {', '.join(map(repr, allowed))}, "
                f"not {value!r}"
            )
        return value
    if origin is tuple:
        (item,) = typing.get_args(tp)[:1]
        if not isinstance(value, list):
            raise ConfigError(f"configuration key {key!r} must be a list, not {value!r}")
        return tuple(_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        kt, vt = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"configuration key {key!r} must be a table, not {value!r}")
        return {_coerce(kt, k, key): _coerce(vt, v, f"{key}.{k}") for k, v in value.items()}
    if origin in (types.UnionType, typing.Union):
        raise AssertionError(f"unsupported config type at {key}")  # pragma: no cover
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and (type(value) is not tp):
        raise ConfigError(
            f"configuration key {key!r} must be {tp.__name__}, not {type(value).__name__} "
            f"({value!r})"
        )
    return value
