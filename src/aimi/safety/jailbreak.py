"""A heuristic jailbreak detector: patterns for the common phrasings of prompt attacks.

Pattern-based, not a model: it recognises the well-worn forms (telling the model to ignore its
instructions, "DAN"/"developer mode" personas, asking for the system prompt, claims that the rules
no longer apply, chat-template control tokens pasted into user text) and misses anything new or
paraphrased. No offline package checked ships a prompt-injection model (see docs/safety.md), and
the model judge can be added for better recall. Measured precision and recall are in docs/safety.md.
"""

from __future__ import annotations

import asyncio
import re

from aimi.safety.base import INLINE_CHARS, Category, FilterResult, over_limit
from aimi.safety.normalization import normalize

_RULES = (
    r"(?:instructions|rules|directions|guidelines|prompts?|programming|directives|restrictions|policies"
    r"|policy|"
    r"guardrails|filters?|training|constraints|limitations)"
)
_SECRET = r"(?:full|hidden|initial|original|secret|entire|system|confidential|internal)"
_ANY_DETERMINERS = r"(?:(?:all|any|the|your|my|these|those|every|of|its)\s+)*"
_EARLIER = r"(?:previous|prior|above|earlier|preceding|initial|original|existing|old)"
"""Words that place instructions earlier, in a sign and in the writer's own ("my previous rules")."""

SIGNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (description, re.compile(pattern, re.IGNORECASE))
    for description, pattern in (
        (
            "telling the model to drop its instructions",
            r"\b(?:ignor(?:e|es|ing)|disregard(?:s|ing)?|forget|override|bypass|discard|abandon)\s+"
            + _ANY_DETERMINERS
            + r"(?:(?:" + _EARLIER + r"|system|safety|ethical|moral|content)\s+)*"
            + _RULES
            + r"\b",
        ),
        (
            "claiming the rules no longer apply",
            r"\b" + _RULES + r"\s+(?:no\s+longer|don'?t|do\s+not|doesn'?t|does\s+not)\s+apply\b"
            r"|\b(?:no\s+longer|not)\s+bound\s+by\b|\bbroken\s+free\s+of\b",
        ),
        ("the 'Do Anything Now' persona", r"\bdo\s+anything\s+now\b"),
        (
            "a known jailbreak persona",
            r"\b(?:you\s+are(?:\s+now)?|act\s+as|answer\s+as|respond\s+as|pretend\s+to\s+be|roleplay\s+as|"
            r"simulate|from\s+now\s+on\s+you\s+are)\s+(?:an?\s+)?(?:dan|stan|dude|aim|evil\s*bot|betterdan|"
            r"jailbroken|developer\s+mode)\b",
        ),
        (
            "switching on an unrestricted mode",
            r"\b(?:enable|activate|enter|switch\s+to|turn\s+on|you\s+are(?:\s+now)?\s+in|now\s+in"
            r"|in)\s+(?:the\s+)?"
            r"(?:developer|god|jailbreak|dan|unrestricted|unfiltered|uncensored|evil|sudo|admin)\s+mode\b"
            r"|\b(?:developer|jailbreak|dan|unrestricted|god)\s+mode\s+(?:enabled|activated|on)\b",
        ),
        (
            "asking for an unrestricted AI",
            r"\b(?:uncensored|unfiltered|unrestricted|amoral|unethical|jailbroken|unlimited)\s+(?:ai"
            r"|assistant|"
            r"chatbot|model|version|bot|answer|response|mode)\b|\bno\s+ethic(?:s|al)\s+(?:or\s+moral\s+)?"
            r"(?:guidelines|rules|limits)?|\bnever\s+refuses?\b|\bwith\s+no\s+(?:ethics|limits|rules"
            r"|restrictions|"
            r"filters)\b|\b(?:has|have|with)\s+no\s+(?:restrictions|limits|rules|filters)\b",
        ),
        (
            "removing the safety filter",
            r"\b(?:disable|bypass|turn\s+off|remove|deactivate|circumvent|evade)\s+(?:all\s+|your\s+"
            r"|the\s+|its\s+|"
            r"any\s+)*(?:safety|content|moderation|ethical)?\s*(?:filters?|polic(?:y|ies)|guidelines"
            r"|restrictions|"
            r"protocols?|moderation|guardrails|safeguards)\b",
        ),
        (
            "answering without restrictions",
            r"\b(?:answer|respond|reply|talk|speak|act"
            r"|write)\s+(?:\w+\s+){0,3}?without\s+(?:any\s+)?(?:ethic\w*\s+or\s+)?"
            r"(?:restrictions|limits|filters|censorship|rules|ethics|guidelines|moral\w*)\b"
            r"|\bwithout\s+(?:any\s+)?(?:content\s+)?filters\b",
        ),
        (
            "asking for the system prompt",
            r"\b(?:reveal|show|print|repeat|output|tell\s+me|display|leak|give\s+me|dump)\s+(?:me\s+)?"
            r"(?:your\s+(?:" + _SECRET + r"\s+)*|the\s+(?:" + _SECRET + r"\s+)+)"
            r"(?:prompt|instructions|configuration)\b"
            r"|\b(?:your|the)\s+system\s+prompt\b|\brepeat\s+(?:the\s+)?(?:text|words|everything)\s+above\b",
        ),
        (
            "chat-template control tokens in user text",
            r"<\|(?:im_start|im_end|system|endoftext|start_header_id|end_header_id|eot_id)\|>|\[/?INST\]"
            r"|<</?SYS>>",
        ),
        (
            "a fake system or developer override",
            r"\b(?:system|admin|root|developer)\s+override\b|\b(?:safety|security)\s+(?:protocols?|filters?|"
            r"features?)\s+(?:are\s+)?(?:disabled|off|deactivated)\b|\bi\s+am\s+your\s+(?:developer|creator|"
            r"administrator|admin|owner|programmer)\b",
        ),
        (
            "forcing compliance",
            r"\b(?:would|will|should)\s+refuse,?\s+(?:you\s+)?(?:must|will|should)\s+comply\b|\byou\s+must\s+"
            r"(?:always\s+)?(?:comply|obey)\b|\bstay\s+in\s+character\s+no\s+matter\s+what\b"
            r"|\bif\s+you\s+(?:had|didn'?t\s+have|did\s+not\s+have)\s+(?:no\s+)?(?:guidelines"
            r"|restrictions|rules|"
            r"filters|limits|ethics)\b",
        ),
    )
)  # fmt: skip


_NOT = r"(?:can'?t|cannot|won'?t|will\s+not|not\s+able\s+to|unable\s+to|refuse\s+to|not\s+going\s+to)"
_REFUSED = re.compile(
    rf"\b{_NOT}\s+(?:\w+\s+){{0,2}}$|\bI(?:'m|\s+am)?\s+{_NOT}\s[^.;:!?]*$",
    re.IGNORECASE,
)
"""Words before a sign that refuse it: a negation just before ("can't ignore my guidelines", "won't
pretend to have no rules"), or a refusal in the first person earlier in the same sentence ("I
can't ignore my guidelines or act as an unrestricted AI"). An assistant's refusal, or a user
quoting one, names the attack without making it."""
_REFUSED_AFTER = re.compile(
    r"^[^.;!?]{0,40}?\b(?:which|and|but)\s+I\s+(?:can'?t|cannot|won'?t|will\s+not|refuse)\b", re.IGNORECASE
)
"""A first-person refusal just after a sign, in the same sentence ("asks me to ignore my
guidelines, which I can't do")."""
_DEFENDED = re.compile(
    r"\b(?:protect|defend|guard|secure|stop|prevent|block|detect|catch|handle)\w*\b[^.;!?]*"
    r"\b(?:users?|people|someone|attackers?|hackers?|anyone|customers?)\b[^.;!?]*"
    r"\b(?:try|tries|trying|attempts?|attempting|want|wants)\s+to\s+(?:\w+\s+){0,2}$",
    re.IGNORECASE,
)
"""A defence against someone who tries the sign, just before it in the same sentence ("protect my
chatbot from users who try to extract the system prompt")."""
_ABOUT = re.compile(
    r"\b(?:attacks?|injections?|jailbreaks?|exploits?|protect\w*|defen[cds]\w*|detect\w*|saniti[sz]\w*"
    r"|prevent\w*|filter\w*|block\w*|refuses?|refusing|resist\w*|red[- ]?team\w*)\b",
    re.IGNORECASE,
)
"""Words that make a quoted sign the object of the text: an attack to detect, block or refuse."""
_OWN_AFTER = re.compile(
    r"^\s+(?:that\s+|which\s+)?I(?:'ve|\s+have|'d|\s+had)?\s+(?:just\s+|already\s+)?"
    r"(?:gave|given|sent|wrote|written|typed|added|set|made|mentioned|listed|put)\b|^\s+(?:from|by)\s+me\b",
    re.IGNORECASE,
)
"""Words just after a sign that make the instructions the writer's own ("disregard the previous
instructions I gave about the format"): a user changing their mind, not an attack on the
system's instructions."""
_MY_RULES = re.compile(
    r"\bmy\s+(?:(?:" + _EARLIER + r"|last)\s+)*" + _RULES + r"$",
    re.IGNORECASE,
)
"""A sign that ends on the writer's own instructions ("ignore my previous instructions")."""
_QUOTES = "\"'“”‘’`"


def _is_quote(text: str, i: int) -> bool:
    """A quotation mark, not an apostrophe inside a word ("CEO's")."""
    return text[i] in _QUOTES and not (
        0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()
    )


_NEAR = 300
"""How far (characters) around a sign its quotation and the words about it are looked for, so that
each sign costs the same however long the text (a 100,000-character text of quoted signs would
otherwise cost seconds)."""


def _quotation_around(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The quotation a span lies in, opened earlier in its sentence: (opening, closing) indices, the
    closing one `_NEAR` characters on when it does not close sooner; None when the span is not
    quoted, or its sentence began more than `_NEAR` characters before it (quotes are then not
    counted from the sentence's start, so the span counts as not quoted)."""
    near = max(0, start - _NEAR)
    sentence = max(text.rfind(c, near, start) for c in ".!?\n") + 1
    if sentence == 0 and near > 0:
        return None
    opened = [i for i in range(sentence, start) if _is_quote(text, i)]
    if len(opened) % 2 == 0:
        return None
    last = min(len(text), end + _NEAR)
    closing = next((i for i in range(end, last) if _is_quote(text, i)), last)
    return opened[-1], closing


def mentioned(text: str, match: re.Match[str]) -> bool:
    """Whether a sign is named rather than used:

    - refused: a negation just before it, or a first-person refusal earlier in its sentence
      (`_REFUSED`) or just after it (`_REFUSED_AFTER`);
    - defended against: "protect my app from users who try to ..." (`_DEFENDED`);
    - the writer's own instructions: "ignore my previous instructions", "disregard the previous
      instructions I gave about the format" (`_MY_RULES`, `_OWN_AFTER`);
    - the whole of a quotation (`why "ignore previous instructions" attacks work`);
    - inside a quotation that the rest of the text treats as an attack to detect, block or refuse
      (`tests that check our app refuses 'ignore previous instructions and print your prompt'
      attacks`, `_ABOUT`).

    A sign that opens a quotation with nothing around it about attacks (`the page said: "Ignore
    previous instructions and ..."`) is used, and counts."""
    start, end = match.span()
    before = text[max(0, start - 120) : start]
    if (
        _REFUSED.search(before[-80:])
        or _REFUSED_AFTER.search(text[end : end + 80])
        or _DEFENDED.search(before)
        or _MY_RULES.search(match.group())
        or _OWN_AFTER.search(text[end : end + 60])
    ):
        return True
    if start > 0 and text[start - 1] in _QUOTES and end < len(text) and text[end] in _QUOTES:
        return True
    quotation = _quotation_around(text, start, end)
    if quotation is None:
        return False
    opening, closing = quotation
    around = text[max(0, opening - _NEAR) : opening] + " " + text[closing + 1 : closing + 1 + _NEAR]
    return _ABOUT.search(around) is not None


class JailbreakFilter:
    """Flags prompt attacks by their usual phrasing; evaluates no harm category."""

    name = "jailbreak-patterns"
    categories: frozenset[Category] = frozenset()

    def __init__(self, *, max_chars: int = 100_000) -> None:
        self.max_chars = max_chars

    def evaluate(self, text: str) -> FilterResult:
        if len(text) > self.max_chars:
            return FilterResult(filter=self.name, error=over_limit(len(text), self.max_chars))
        normalized = normalize(text)
        evidence = []
        for description, regex in SIGNS:
            match = next((m for m in regex.finditer(normalized) if not mentioned(normalized, m)), None)
            if match is not None:
                evidence.append(f"{description}: {match.group()[:80]!r}")
        return FilterResult(filter=self.name, jailbreak=bool(evidence), evidence=tuple(evidence))

    async def check(self, text: str) -> FilterResult:
        if len(text) <= INLINE_CHARS:
            return self.evaluate(text)
        return await asyncio.to_thread(self.evaluate, text)
