"""Scoring: per-cluster features, a score in [0, 1], the flag, and reasons in words.

Input: the partition of :mod:`linkage.communities` and the tables ``accounts``, ``links``,
``keys``, ``key_members``, ``edges``, ``edge_signals`` (and ``interactions``) on the engine's
connection (:class:`linkage.engines.SQLConnection`).

The per-cluster aggregates are SQL written once, in DuckDB's dialect, and run on that
connection, whichever engine it is (:mod:`linkage.engines`). The driver receives one row per
cluster (or per cluster and signal), and each kind of evidence's intra-cluster pairs as
numpy columns; features, score and reasons are numpy and Python on the driver. The modules:

:mod:`~linkage.scoring.stage`       :func:`score_clusters`, the stage, calling the others
:mod:`~linkage.scoring.aggregates`  the SQL aggregates on the engine's connection
:mod:`~linkage.scoring.features`    the features and the score, pure numpy functions
:mod:`~linkage.scoring.usage`       the usage features (``interactions``)
:mod:`~linkage.scoring.departure`   category departure, one of the usage features
:mod:`~linkage.scoring.verdicts`    analysts' labels: ``known_bad`` and cleared clusters
:mod:`~linkage.scoring.reasons`     the reasons in words
:mod:`~linkage.scoring.rows`        the rows of ``cluster_scores`` as JSON

Output, keyed by the run-local cluster number ``cluster``:

``members(idx INTEGER, cluster INTEGER)``
    every clustered account (on the engine's connection and in the driver's DuckDB).
``cluster_keys(cluster, signal, key, n_members, n_global)``
    every key shared by two or more members: how many members carry it, and how many
    accounts carry it in the whole input (on the engine's connection).
``intra_edges(cluster, a, b, weight)``
    the edges inside clusters: the evidence that put the accounts together (on the engine's
    connection).
``cluster_scores(cluster, size, score, flagged, features, contributions, reasons)``
    ``features``/``contributions`` are JSON objects, ``reasons`` a JSON list of sentences
    (in the driver's DuckDB).

When the engine's connection is not the driver's, the pipeline copies back only the
evidence the store keeps (:meth:`linkage.engines.Engine.collect`).

The score
---------
Every feature ``f`` lies in [0, 1] and has a weight ``w_f`` (``scoring.weights``). The linked
shares below are squared (``e_f = f**2``; ``e_burst = burst``): evidence that runs through
the whole cluster counts fully, evidence that covers a corner of it (a family of four inside
a neighbourhood of sixteen: 0.25) counts little (0.06). The contribution of a feature is
``c_f = w_f * e_f``, read as "how sure this feature alone makes us". Contributions combine by
noisy-OR, in two groups damped by size differently: what households share too (cards,
devices, emails, phones, BIN and postal codes, networks, observed values: the
:data:`HOUSEHOLD` features) reaches full weight only at ``household_full_size`` members (a
family's card shared by eight is what families do), everything else at ``full_size``::

    raw_h = 1 - prod_{f in HOUSEHOLD} (1 - c_f)      raw_o = 1 - prod_{other f} (1 - c_f)
    size(s, full) = clamp(log(s / 2) / log(full / 2), 0, 1)
    score = 1 - (1 - size(s, household_full_size) * raw_h) * (1 - size(s, full_size) * raw_o)

The features (a *linked share* is the largest group of members connected to each other
through one kind of evidence alone, as a share of the cluster):

``burst``                   largest share of members that signed up within
                            ``burst_window_minutes`` of each other
``identifier_reuse``        linked share through shared cards, devices, emails and phones
                            (and strong edges that single-valued weaker signals, or one
                            pipeline's templates on its schedule, make together):
                            identifiers one person owns, so one feature however an operator
                            mixes them (a chain linked card-device-card-device)
``issuer_reuse``            linked share through shared card BIN + billing postal code
``network_concentration``   linked share through shared IPs, /24, /64 or /48 ranges
``observation_reuse``       linked share through shared ``observations`` values, times how
                            much those values are the members' own
                            (:func:`~linkage.scoring.aggregates.privacy_shares`)
``behaviour_reuse``         linked share through shared templates, private template pools,
                            near-identical template sets and their synchronised use
                            (``interactions``); its contribution is multiplied by the larger
                            of the members' ``own_work`` (the share of their requests on their
                            own templates) and ``category_departure`` (the share of members
                            whose mix of request categories departs from the average
                            account's beyond chance:
                            :func:`~linkage.scoring.departure.category_departure`)
``schedule_sync``           share of members synchronised with another member whatever the
                            templates (``activity_sync``, judged against the overlap chance
                            predicts): a scheduler's shifts each count
``usage_campaign``          how campaign-like the members' usage is (see :func:`usage_campaign`);
                            counted as it is, like ``burst``
``known_bad``               share of members that analysts confirmed as operators
                            (``linkage label``); counted as it is and not damped by size::

                                score = 1 - (1 - size * raw) * (1 - w_known_bad * known_bad)

A cluster is flagged when its score reaches ``scoring.threshold``, or when it is a piece of a
flagged cluster's fleet (:func:`linkage.campaigns.fleet_pieces`; its first reason says so).
A cluster whose members overlap a membership an analyst marked ``false_positive`` with
Jaccard at least ``scoring.suppress_min_jaccard`` (0.8) keeps its score but is not flagged,
and its reasons say so; once it changes more than that it is judged afresh.

Only keys carried by fewer accounts than their signal's cap link anyone: sharing a campus NAT
with the whole campus is not concentration.

When the input has ``interactions``, each cluster's usage is reported with its features
(``requests``, ``usage_accounts``, ``input_tokens``, ``output_tokens``,
``coding_agentic_share``, ``usage_days``, ``requests_per_account_day``,
``timing_regularity``, ``model_concentration``, ``private_templates``, ``template_sharers``,
``own_work``, ``category_departure``, ``usage_campaign``) and as a reason; ``usage_campaign``
is scored.
"""

from linkage.scoring.features import FEATURES, HOUSEHOLD, combine, size_factor
from linkage.scoring.stage import score_clusters
from linkage.scoring.usage import usage_campaign

__all__ = ["FEATURES", "HOUSEHOLD", "combine", "score_clusters", "size_factor",
           "usage_campaign"]
