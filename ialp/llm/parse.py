"""Reading a choice or a ranking out of a model's free-text answer, or refusing to guess.

Every parser returns ``None`` when the answer does not name exactly one candidate (no candidate,
two different ones, nonsense): an unreadable answer is a failure to count, never a default.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from typing import Any

from ialp.llm.prompts import LABELS

__all__ = ["parse_choice", "parse_ranking"]

_MARKER = re.compile(
    r"\b(?:final answer|answer|choice|option|candidate|pick|letter|select(?:ed)?|choose|chosen)\s*"
    r"(?:is|would be|:|=|-)?\s*[:\-]?\s*[\"'(\[*]*([A-Za-z]|\d{1,3})(?![A-Za-z0-9])", re.IGNORECASE)
_LEADING = re.compile(r"^[\s\"'*(\[]*([A-Za-z])\s*[).:\]]")
_LINE_LABEL = re.compile(r"^[\s\"'*(\[]*([A-Za-z])\s*[).:\]]", re.MULTILINE)
_BARE = re.compile(r"^[\W_]*([A-Za-z]|\d{1,3})[\W_]*$")
_STANDALONE = re.compile(r"(?<![A-Za-z0-9'’-])([A-Z])(?![A-Za-z0-9'’-])")
# Capital "A" and "I" are also English words: skip them when a lowercase word follows, unless that
# word reads as a statement about the label ("A is", "A because").
_WORD_AFTER = re.compile(r"\s+([a-z]+)")
_LABEL_VERBS = frozenset({"is", "was", "and", "or", "because", "seems", "would", "as", "since", "fits", "best"})
_YEAR = re.compile(r"\s*\(\d{4}\)\s*$")
_JSON = re.compile(r"\{.*?\}", re.DOTALL)


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def _label_or_number(token: str, k: int, ids: Sequence[str] | None) -> int | None:
    """A letter label, a 1-based candidate number or a candidate id -> candidate position."""
    token = token.strip()
    if len(token) == 1 and token.isalpha():
        pos = LABELS.index(token.upper())
        return pos if pos < k else None
    if token.isdigit():
        if ids is not None and token in ids:
            return ids.index(token)
        n = int(token)
        return n - 1 if 1 <= n <= k else None
    return None


def _title_matches(text: str, titles: Sequence[str]) -> set[int]:
    """Candidates whose title occurs in ``text`` (case/punctuation-insensitive; year optional)."""
    hay = f" {_norm(text)} "
    found: dict[int, str] = {}
    for pos, title in enumerate(titles):
        for variant in (_norm(title), _norm(_YEAR.sub("", title))):
            if len(variant) >= 3 and f" {variant} " in hay:
                found[pos] = variant
                break
    # "Alien" inside "Aliens vs Predator" style overlaps: keep the longer title.
    return {p for p, v in found.items() if not any(v != w and v in w for w in found.values())}


def _fuzzy_title(text: str, titles: Sequence[str]) -> int | None:
    """A short answer that is a near-spelling of exactly one title."""
    answer = _norm(text)
    if not answer or len(answer) > 80:
        return None
    names = [_norm(_YEAR.sub("", t)) for t in titles]
    close = difflib.get_close_matches(answer, names, n=2, cutoff=0.85)
    if len(close) == 1 and names.count(close[0]) == 1:
        return names.index(close[0])
    return None


def _from_value(value: Any, titles: Sequence[str], ids: Sequence[str] | None) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return _label_or_number(str(value), len(titles), ids)
    if isinstance(value, str):
        bare = _BARE.match(value)
        if bare:
            return _label_or_number(bare[1], len(titles), ids)
        matches = _title_matches(value, titles)
        return next(iter(matches)) if len(matches) == 1 else _fuzzy_title(value, titles)
    return None


def _word_use(text: str, m: re.Match[str]) -> bool:
    """Whether a matched single letter is an English word ("a film", "I think"), not a label."""
    letter = m[1]
    if not letter.isalpha() or (letter.isupper() and letter not in "AI"):
        return False
    after = _WORD_AFTER.match(text, m.end())
    return bool(after) and after[1] not in _LABEL_VERBS  # type: ignore[index]


def _json_objects(text: str) -> list[dict[str, Any]]:
    out = []
    for m in _JSON.finditer(text):
        try:
            obj = json.loads(m.group(0))
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append({str(k).lower(): v for k, v in obj.items()})
    return out


def parse_choice(text: str | None, titles: Sequence[str], ids: Sequence[str | int] | None = None) -> int | None:
    """The position of the one candidate an answer names, or None.

    Understood, in this order: JSON (``{"choice": "B"}``, ``{"ranking": [...]}`` -> its first), a bare
    label (``B``, ``(b)``, ``B.``, ``2``), an explicit marker (``Answer: B``, ``option 2``), a leading
    label (``B) Heat``), then the candidate letters and titles mentioned anywhere, which must agree.

    Args:
        text: The model's answer.
        titles: Candidate titles in label order (A, B, ...).
        ids: Optional candidate ids (e.g. item ids) that an answer may quote instead of a label.
    """
    if not text or not text.strip() or not titles:
        return None
    k = len(titles)
    str_ids = [str(i) for i in ids] if ids is not None else None
    for obj in _json_objects(text):
        for key in ("choice", "answer", "item", "candidate", "letter"):
            if key in obj:
                return _from_value(obj[key], titles, str_ids)
        if isinstance(obj.get("ranking"), list) and obj["ranking"]:
            return _from_value(obj["ranking"][0], titles, str_ids)
    bare = _BARE.match(text)
    if bare:
        return _label_or_number(bare[1], k, str_ids)
    named = _title_matches(text, titles)
    marked = {_label_or_number(m[1], k, str_ids) for m in _MARKER.finditer(text) if not _word_use(text, m)}
    if marked:  # an explicit label wins unless a title of another candidate contradicts it
        pos = marked.pop() if len(marked) == 1 else None
        return pos if pos is not None and named <= {pos} else None
    if len({m[1].upper() for m in _LINE_LABEL.finditer(text)}) > 1:  # the answer lists candidates, not a choice
        return None
    lead = _LEADING.match(text)
    if lead:
        pos = _label_or_number(lead[1], k, str_ids)
        if pos is not None:
            return pos if named <= {pos} else None
    for m in _STANDALONE.finditer(text):
        if _word_use(text, m):
            continue
        pos = _label_or_number(m[1], k, str_ids)
        if pos is not None:
            named.add(pos)
    if len(named) == 1:
        return named.pop()
    return _fuzzy_title(text, titles) if not named else None


def parse_ranking(text: str | None, titles: Sequence[str], ids: Sequence[str | int] | None = None) -> list[int] | None:
    """Candidate positions best first, from JSON ``{"ranking": [...]}`` or a list like ``B > A > C``.

    Returns None when nothing readable is there or a candidate repeats; a partial ranking (a prefix)
    is returned as is.
    """
    if not text or not text.strip() or not titles:
        return None
    str_ids = [str(i) for i in ids] if ids is not None else None
    for obj in _json_objects(text):
        if isinstance(obj.get("ranking"), list):
            ranked = [_from_value(v, titles, str_ids) for v in obj["ranking"]]
            if not ranked or None in ranked or len(set(ranked)) != len(ranked):
                return None
            return [r for r in ranked if r is not None]
    body = text.split(":", 1)[1] if re.match(r"^\s*(?:ranking|answer|order)\s*:", text, re.IGNORECASE) else text
    tokens = [t for t in re.split(r"\s*(?:>|,|;|\n|\bthen\b)\s*", body.strip()) if t.strip()]
    if not tokens:
        return None
    out: list[int] = []
    for token in tokens:
        bare = _BARE.match(token) or _LEADING.match(token)
        pos = _label_or_number(bare[1], len(titles), str_ids) if bare else None
        if pos is None:
            return None
        out.append(pos)
    return out if len(set(out)) == len(out) else None
