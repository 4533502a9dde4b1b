"""Synthetic, seeded input data with planted operator groups (see :mod:`.generator` and
:mod:`.worlds`)."""

from linkage.synth.generator import ALL_SCENARIOS, SCENARIOS, GenerateSummary, generate

__all__ = ["ALL_SCENARIOS", "SCENARIOS", "GenerateSummary", "generate"]
