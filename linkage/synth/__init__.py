"""Synthetic, seeded input data with planted operator groups (see :mod:`.generator`)."""

from linkage.synth.generator import SCENARIOS, GenerateSummary, generate

__all__ = ["SCENARIOS", "GenerateSummary", "generate"]
