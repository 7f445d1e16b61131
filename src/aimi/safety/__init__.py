"""Content safety: filters that score text into hate, sexual, violence and self_harm (plus
jailbreak and custom blocklists), and the per-deployment policy that turns their results into a
decision. See docs/safety.md."""

from aimi.safety.base import (
    ALL_CATEGORIES,
    BlocklistMatch,
    Category,
    FilterResult,
    SafetyFilter,
    Severity,
)
from aimi.safety.blocklists import Blocklist, BlocklistFilter
from aimi.safety.classifier import ClassifierFilter, ToxicityModel
from aimi.safety.jailbreak import JailbreakFilter
from aimi.safety.judge import Ask, JudgeFilter
from aimi.safety.patterns import PatternFilter
from aimi.safety.policy import (
    CategoryDecision,
    Decision,
    Direction,
    JailbreakDecision,
    SafetyPolicy,
    Thresholds,
    decide,
)
from aimi.safety.semantic import SemanticFilter, SemanticModel
from aimi.safety.service import SafetyService, offline_filters, semantic_filters
from aimi.safety.window import OutputWindow

__all__ = [
    "ALL_CATEGORIES",
    "Ask",
    "Blocklist",
    "BlocklistFilter",
    "BlocklistMatch",
    "Category",
    "CategoryDecision",
    "ClassifierFilter",
    "Decision",
    "Direction",
    "FilterResult",
    "JailbreakDecision",
    "JailbreakFilter",
    "JudgeFilter",
    "OutputWindow",
    "PatternFilter",
    "SafetyFilter",
    "SafetyPolicy",
    "SafetyService",
    "SemanticFilter",
    "SemanticModel",
    "Severity",
    "Thresholds",
    "ToxicityModel",
    "decide",
    "offline_filters",
    "semantic_filters",
]
