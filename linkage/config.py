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


@dataclass(frozen=True)
class IngestConfig:
    """How input is read, validated and normalised."""

    on_bad_rows: Literal["fail", "quarantine"] = "fail"
    """``fail``: any contract violation stops the run before anything is written.
    ``quarantine``: row-level violations set the row aside and are counted; file-level ones
    (missing table or column, unreadable file) still fail."""
    quarantine_sample: int = 1000
    """How many quarantined rows the run keeps (with reason and shortened value)."""
    max_reported_problems: int = 50
    """How many problems an input error lists before it says "and N more"."""
    max_field_chars: int = 10_000
    """Longest text value accepted in any column; a longer one is a row-level problem (a
    runaway export or a hostile file must not reach the hash functions and the graph)."""
    max_line_bytes: int = 2_097_152
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

    weight: float
    cap: int = 200
    enabled: bool = True
    min_shared: int = 1
    """A pair that shares fewer keys of this signal gets no evidence from it (prompt
    templates: one shared template is a coincidence, several are a pipeline)."""


@dataclass(frozen=True)
class CosignupConfig:
    """Co-signup: accounts created within ``window_minutes`` of each other that share a weak
    key (a signup network range, a card BIN, a user agent)."""

    weight: float = 0.4
    cap: int = 200
    enabled: bool = True
    window_minutes: int = 30
    weak_keys: tuple[str, ...] = ("signup_net",)
    """``signup_net``, ``bin``, ``user_agent``. Only the signup range by default: a bank's BIN
    or a browser's user agent is shared by so many signups in any half hour that they add
    most of the graph's pairs, weak ones, for no measured gain (docs/configuration.md)."""


@dataclass(frozen=True)
class SetBandsConfig:
    """What the two set-similarity signals share (:class:`PromptConfig`,
    :class:`ActivitySyncConfig`): each account's set is cut into ``bands`` MinHash-LSH keys
    of ``rows`` values each; a pair needs ``min_shared`` shared band keys, each a witness of
    ``weight * specificity(n, cap)``."""

    weight: float = 0.35
    cap: int = 200
    enabled: bool = True
    min_shared: int = 2
    bands: int = 20
    rows: int = 3


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

    min_templates: int = 5
    min_uses: int = 2


@dataclass(frozen=True)
class TemplatePoolConfig(SetBandsConfig):
    """Private template pools: templates whose sets of *users* are nearly the same (MinHash-LSH
    over each template's set of accounts, ``bands`` keys of ``rows`` values; two templates
    sharing ``min_shared`` band keys are one pool's) form a pool; an account that uses at
    least ``min_used`` templates of a pool carries the pool's key. A pool's key is evidence
    however many accounts use it: a pipeline's accounts all draw from its pool, so its
    templates have the same users, while the users of popular public templates are random
    slices of everyone. ``cap`` is the population itself (no cap)."""

    weight: float = 0.5
    cap: int = 2_000_000_000
    enabled: bool = True
    min_carriers: int = 3
    """Templates used by fewer accounts are not compared."""
    min_templates: int = 3
    """A pool has at least this many templates."""
    min_used: int = 2
    min_lift: float = 2.0
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

    weight: float = 0.3
    cap: int = 2_000_000_000
    """No cap: a band key is judged by the chance overlap of its pairs' schedules
    (:func:`linkage.graph.build_edges`), not by how many accounts share it."""
    bands: int = 30
    rows: int = 2
    """Sensitive bands (a pair of Jaccard 0.3 shares two of 30 three times in four): they
    only propose pairs, which the count of their shared buckets judges."""
    window_minutes: int = 10
    min_buckets: int = 20
    alpha: float = 0.01
    """The chance that any of the pairs tested is linked by chance alone: a pair's shared
    buckets must be that unlikely under independence, divided among the pairs tested
    (Bonferroni)."""
    group_rounds: int = 3
    """Rounds of the group step: two accounts each synchronised beyond chance with a third
    are tested too (the bands rarely propose a pair of a big scheduler that each run a
    small share of its jobs); 0 tests only what the bands propose."""
    group_fanout: int = 16
    """In each round an account offers pairs among its this many strongest synchronised
    fellows, and takes at most this many new pairs from its fellows' offers (first those
    with most fellows in common): the tests grow with the accounts, not their squares."""


@dataclass(frozen=True)
class CoactivityConfig:
    """Co-activity (SynchroTrap): accounts that act on the same ``observations`` value (same
    kind) within ``window_minutes`` of each other: the same product reviewed on the same day,
    the same link posted in the same hour. Needs ``observations.seen_at``. Off by default: on
    account metadata, observations are attributes, not events."""

    weight: float = 0.3
    cap: int = 50
    enabled: bool = False
    window_minutes: int = 60
    min_shared: int = 1
    """A pair with fewer shared keys (value and time bucket; one coincidence gives one key
    per bucket grid that sees it, so one or two) gets no evidence from this signal."""


@dataclass(frozen=True)
class ObservationConfig:
    """``observations`` rows: every kind is a signal; ``kinds`` overrides the weight per kind
    (0 disables a kind)."""

    weight: float = 0.5
    cap: int = 200
    enabled: bool = True
    kinds: dict[str, float] = field(default_factory=dict)


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
    # Six keys: at least three separate moments (one coincidence is seen by one or two grids).
    prompt_sync: CoactivityConfig = CoactivityConfig(weight=0.4, cap=50, enabled=True,
                                                     window_minutes=10, min_shared=6)
    observation: ObservationConfig = ObservationConfig()


@dataclass(frozen=True)
class GraphConfig:
    """How shared keys become edges."""

    clique_max: int = 32
    """A key shared by at most this many accounts links every pair of them."""
    cohesion_min: int = 8
    """A device or network key shared by more accounts than this (more than a household
    shares) counts as far as its carriers are tied to each other by independent evidence
    beyond chance (its cohesion), like every identifier key of more than ``clique_max``."""
    ring_degree: int = 8
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
    resolution: float = 0.05
    """For CPM: the minimum weighted internal density a cluster must keep."""
    iterations: int = 1
    beta: float = 0.01
    core_edge: float = 0.6
    """An edge at least this heavy is a strong link for the strong-core step."""
    core_min_size: int = 8
    """Accounts that strong links join into a connected 2-core of at least this many form one
    cluster whatever Leiden made of them (chain-like camouflage rings); 0 disables the step."""
    warm_start: bool = True
    """Keep the previous run's clusters in components that have not changed at all, and
    start Leiden from them elsewhere (accounts seen before keep their cluster, new accounts
    start alone), so a small change of input is a small change of clusters."""
    warm_min_gain: float = 2.0
    """With a warm start, a connected component keeps last run's clusters unless tonight's
    Leiden result is better by at least this much CPM quality (hysteresis: no renaming for
    marginal gains)."""


@dataclass(frozen=True)
class ScoringConfig:
    """Cluster score and the flagging threshold (see ``docs/algorithm.md``)."""

    threshold: float = 0.5
    full_size: int = 10
    """Clusters of this size or more get the full size factor; smaller ones are damped so
    that a handful of accounts cannot reach the threshold on little evidence."""
    household_full_size: int = 24
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
    suppress_min_jaccard: float = 0.8
    """A cluster marked ``false_positive`` is not flagged again while its members overlap the
    labelled members at least this much (Jaccard)."""


@dataclass(frozen=True)
class ContinuityConfig:
    """Matching tonight's clusters to the previous run's."""

    min_jaccard: float = 0.5
    """A cluster keeps a previous id when their member sets overlap at least this much."""


@dataclass(frozen=True)
class CampaignsConfig:
    """Grouping flagged clusters into campaigns (``linkage.campaigns``)."""

    enabled: bool = True
    """Give flagged clusters a ``campaign_id``; ``false`` leaves every one NULL."""
    min_lift: float = 2.0
    """Two flagged clusters join when the evidence between them is at least this many times
    what a degree-preserving null model expects (``k_i k_j / 2m``, as modularity does) and
    amounts to at least one strong edge (``scoring.strong_edge``)."""

    def __post_init__(self) -> None:
        if not self.min_lift >= 1.0:
            # Below 1 a join would lower modularity: less shared than chance predicts.
            raise ConfigError(f"configuration key 'campaigns.min_lift' must be at least 1, "
                              f"not {self.min_lift!r}")


@dataclass(frozen=True)
class StoreConfig:
    """What a run keeps in the store."""

    evidence_min_score: float = 0.4
    """Evidence (intra-cluster edges with per-signal contributions, and shared keys) is kept
    for every flagged cluster and every cluster scoring at least this; memberships and
    scores for every cluster. At a
    million accounts most accounts sit in low-scoring neighbourhood clusters whose evidence
    would be most of the store's rows and write time; 0 keeps everything."""
    max_shrink: float = 0.5
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
    buckets: int = 32
    """Connected components are hashed into this many groups, one Leiden task each."""
    max_rounds: int = 60
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
        cfg = _build(cls, data, "")
        _check_ranges(cfg)
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
        return dataclasses.replace(base, **values)
    missing = [n for n, f in fields.items() if n not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"configuration table {prefix.rstrip('.') or '<root>'!r} needs "
                          f"the key {prefix + missing[0]!r}")
    return cls(**values)


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


def _check_ranges(cfg: RunConfig) -> None:
    def need(ok: bool, key: str, what: str, value: Any) -> None:
        if not ok:
            raise ConfigError(f"configuration key {key!r} must be {what}, not {value!r}")

    for f in dataclasses.fields(cfg.signals):
        sig = getattr(cfg.signals, f.name)
        need(0.0 <= sig.weight < 1.0, f"signals.{f.name}.weight", "in [0, 1)", sig.weight)
        need(sig.cap >= 2, f"signals.{f.name}.cap", "at least 2", sig.cap)
        if isinstance(sig, SignalConfig | CoactivityConfig | SetBandsConfig):
            need(sig.min_shared >= 1, f"signals.{f.name}.min_shared", "at least 1",
                 sig.min_shared)
        if isinstance(sig, SetBandsConfig):  # prompt, activity_sync: every count at least 1
            counts = [g.name for g in dataclasses.fields(sig) if g.type in ("int", int)]
            for key in (k for k in counts if k not in ("cap", "min_shared", "group_rounds")):
                need(getattr(sig, key) >= 1, f"signals.{f.name}.{key}", "at least 1",
                     getattr(sig, key))
            need(sig.min_shared <= sig.bands, f"signals.{f.name}.min_shared",
                 f"at most signals.{f.name}.bands", sig.min_shared)
    for kind, w in cfg.signals.observation.kinds.items():
        need(0.0 <= w < 1.0, f"signals.observation.kinds.{kind}", "in [0, 1)", w)
    known_weak = {"signup_net", "bin", "user_agent"}
    for k in cfg.signals.cosignup.weak_keys:
        need(k in known_weak, "signals.cosignup.weak_keys", f"a subset of {sorted(known_weak)}", k)
    need(0.0 < cfg.signals.activity_sync.alpha < 1.0, "signals.activity_sync.alpha",
         "in (0, 1)", cfg.signals.activity_sync.alpha)
    need(cfg.signals.activity_sync.group_rounds >= 0, "signals.activity_sync.group_rounds",
         "at least 0", cfg.signals.activity_sync.group_rounds)
    need(cfg.signals.template_pool.min_lift >= 1, "signals.template_pool.min_lift",
         "at least 1", cfg.signals.template_pool.min_lift)
    for name in ("coactivity", "prompt_sync"):
        minutes = getattr(cfg.signals, name).window_minutes
        need(minutes > 0, f"signals.{name}.window_minutes", "positive", minutes)
    need(cfg.signals.cosignup.window_minutes > 0, "signals.cosignup.window_minutes", "positive",
         cfg.signals.cosignup.window_minutes)
    need(cfg.graph.clique_max >= 2, "graph.clique_max", "at least 2", cfg.graph.clique_max)
    need(cfg.graph.cohesion_min >= 2, "graph.cohesion_min", "at least 2",
         cfg.graph.cohesion_min)
    need(cfg.graph.ring_degree >= 1, "graph.ring_degree", "at least 1", cfg.graph.ring_degree)
    need(cfg.communities.resolution > 0, "communities.resolution", "positive",
         cfg.communities.resolution)
    need(0.0 < cfg.communities.core_edge <= 1.0, "communities.core_edge", "in (0, 1]",
         cfg.communities.core_edge)
    need(cfg.communities.core_min_size == 0 or cfg.communities.core_min_size >= 3,
         "communities.core_min_size", "0 (off) or at least 3", cfg.communities.core_min_size)
    need(cfg.communities.iterations != 0, "communities.iterations", "non-zero (-1: until stable)",
         cfg.communities.iterations)
    need(0.0 < cfg.scoring.threshold <= 1.0, "scoring.threshold", "in (0, 1]",
         cfg.scoring.threshold)
    need(cfg.scoring.full_size >= 3, "scoring.full_size", "at least 3", cfg.scoring.full_size)
    need(cfg.scoring.household_full_size >= 3, "scoring.household_full_size", "at least 3",
         cfg.scoring.household_full_size)
    known_features = set(ScoringConfig().weights)
    for name, w in cfg.scoring.weights.items():
        need(name in known_features, "scoring.weights", f"keys among {sorted(known_features)}",
             name)
        need(0.0 <= w <= 1.0, f"scoring.weights.{name}", "in [0, 1]", w)
    need(0.0 < cfg.scoring.suppress_min_jaccard <= 1.0, "scoring.suppress_min_jaccard",
         "in (0, 1]", cfg.scoring.suppress_min_jaccard)
    need(cfg.communities.warm_min_gain >= 0.0, "communities.warm_min_gain", "non-negative",
         cfg.communities.warm_min_gain)
    need(0.0 < cfg.continuity.min_jaccard <= 1.0, "continuity.min_jaccard", "in (0, 1]",
         cfg.continuity.min_jaccard)
    need(0.0 <= cfg.store.evidence_min_score <= 1.0, "store.evidence_min_score", "in [0, 1]",
         cfg.store.evidence_min_score)
    need(0.0 <= cfg.store.max_shrink <= 1.0, "store.max_shrink", "in [0, 1]",
         cfg.store.max_shrink)
    need(cfg.engine.spark.buckets >= 1, "engine.spark.buckets", "at least 1",
         cfg.engine.spark.buckets)
    need(cfg.engine.spark.max_rounds >= 1, "engine.spark.max_rounds", "at least 1",
         cfg.engine.spark.max_rounds)
    need(cfg.ingest.quarantine_sample >= 0, "ingest.quarantine_sample", "non-negative",
         cfg.ingest.quarantine_sample)
    need(cfg.ingest.max_line_bytes >= 1024, "ingest.max_line_bytes", "at least 1024",
         cfg.ingest.max_line_bytes)
    need(cfg.ingest.max_field_chars >= 64, "ingest.max_field_chars", "at least 64",
         cfg.ingest.max_field_chars)
