"""Synthetic users with known ground truth: topic interests, drift, boredom and leaving.

This is the embedded default simulator: it needs no download, and every quantity an oracle
might want (true interests, expected reward of every item) is exposed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ialp import random as crng
from ialp.data import ItemCatalog
from ialp.simulators.base import Response, UserModel, UserState

# Readable topics so that an LLM can reason about generated items: (name, title nouns).
TOPICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("space exploration", ("Nebula", "Orbit", "Launch", "Comet", "Rover", "Eclipse")),
    ("home cooking", ("Kitchen", "Recipe", "Spice", "Bread", "Stew", "Harvest Table")),
    ("jazz", ("Saxophone", "Blue Note", "Swing", "Trumpet", "Bebop", "Late Set")),
    ("football", ("Derby", "Penalty", "Striker", "Stadium", "Cup Final", "Kick-off")),
    ("world history", ("Empire", "Dynasty", "Revolution", "Crusade", "Archive", "Silk Road")),
    ("gardening", ("Greenhouse", "Rose", "Compost", "Orchard", "Seedling", "Allotment")),
    ("personal finance", ("Budget", "Savings", "Portfolio", "Pension", "Ledger", "Dividend")),
    ("horror", ("Haunting", "Cellar", "Shadow", "Curse", "Night Shift", "Hollow")),
    ("romance", ("Love Letter", "Wedding", "First Date", "Heartbeat", "Promise", "Summer Kiss")),
    ("travel", ("Passport", "Island", "Road Trip", "Backpack", "Harbour", "Night Train")),
    ("fitness", ("Workout", "Marathon", "Stretch", "Core", "Sprint", "Kettlebell")),
    ("chess", ("Gambit", "Endgame", "Checkmate", "Opening", "Knight", "Zugzwang")),
    ("photography", ("Lens", "Exposure", "Darkroom", "Portrait", "Aperture", "Golden Hour")),
    ("wildlife", ("Savannah", "Wolf", "Coral Reef", "Migration", "Owl", "Rainforest")),
    ("stand-up comedy", ("Punchline", "Open Mic", "Roast", "Heckler", "Encore", "Sketch")),
    ("classical music", ("Symphony", "Sonata", "Concerto", "Overture", "Requiem", "Fugue")),
    ("cars", ("Engine", "Rally", "Roadster", "Pit Stop", "Horsepower", "Garage")),
    ("fashion", ("Runway", "Couture", "Tailor", "Street Style", "Atelier", "Fabric")),
    ("science fiction", ("Android", "Time Loop", "Starship", "Colony", "Cyborg", "Wormhole")),
    ("politics", ("Election", "Parliament", "Debate", "Campaign", "Senate", "Referendum")),
)
_ADJECTIVES = ("Silent", "Golden", "Hidden", "Last", "Wild", "Broken", "Bright", "Secret", "Endless",
               "Midnight", "Little", "Great", "Lost", "Modern", "Ancient", "Electric")
_FORMATS = ("documentary", "short film", "podcast episode", "tutorial", "drama series", "live show")
_QUALITY_WORDS = ((-np.inf, "a rough, low-budget"), (-0.4, "an uneven"), (0.0, "a solid"),
                  (0.4, "a polished"), (0.9, "a critically acclaimed"))


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the synthetic world. Defaults give episodes of roughly 10–40 steps."""

    n_items: int = 1000
    n_topics: int = 20
    catalog_seed: int = 0
    secondary_topic_weight: float = 0.3
    quality_std: float = 0.5
    interest_std: float = 1.0
    user_feature_dim: int = 8
    feature_noise: float = 0.3
    affinity_scale: float = 2.0
    quality_weight: float = 1.0
    boredom_weight: float = 0.5
    boredom_decay: float = 0.8
    drift_rate: float = 0.1
    reward_noise: float = 0.05
    leave_base: float = 0.02
    leave_slope: float = 0.15

    def __post_init__(self) -> None:
        if not 1 <= self.n_topics <= len(TOPICS):
            raise ValueError(f"n_topics must be in [1, {len(TOPICS)}], got {self.n_topics}")
        if self.n_items < 2:
            raise ValueError(f"n_items must be >= 2, got {self.n_items}")
        if not 0.0 <= self.boredom_decay < 1.0:
            raise ValueError(f"boredom_decay must be in [0, 1), got {self.boredom_decay}")
        for name in ("leave_base", "leave_slope", "reward_noise", "quality_std", "feature_noise"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def _generate_catalog(cfg: SyntheticConfig) -> tuple[ItemCatalog, np.ndarray, np.ndarray, np.ndarray]:
    """Items with a primary and a secondary topic, a quality, and readable text."""
    rng = np.random.default_rng([crng.Stream.CATALOG, cfg.catalog_seed])
    n, t = cfg.n_items, cfg.n_topics
    primary = rng.integers(0, t, n)
    secondary = (primary + rng.integers(1, t, n)) % t if t > 1 else primary
    topics = np.zeros((n, t))
    topics[np.arange(n), primary] = 1.0 - cfg.secondary_topic_weight
    topics[np.arange(n), secondary] += cfg.secondary_topic_weight
    quality = rng.normal(0.0, cfg.quality_std, n)
    adjective = rng.integers(0, len(_ADJECTIVES), n)
    noun = rng.integers(0, 6, n)
    fmt = rng.integers(0, len(_FORMATS), n)
    titles: list[str] = []
    descriptions: list[str] = []
    tags: list[tuple[str, ...]] = []
    for i in range(n):
        p, s = TOPICS[primary[i]], TOPICS[secondary[i]]
        titles.append(f"The {_ADJECTIVES[adjective[i]]} {p[1][noun[i]]}")
        words = next(w for lo, w in reversed(_QUALITY_WORDS) if quality[i] >= lo)
        descriptions.append(f"{words[0].upper()}{words[1:]} {_FORMATS[fmt[i]]} about {p[0]}"
                            + (f", with a touch of {s[0]}." if s is not p else "."))
        tags.append((p[0], s[0]) if s is not p else (p[0],))
    catalog = ItemCatalog(item_ids=np.arange(n, dtype=np.int64), titles=titles,
                          descriptions=descriptions, tags=tags)
    projection = rng.normal(0.0, 1.0 / np.sqrt(t), (cfg.user_feature_dim, t))
    return catalog, topics, quality, projection


class SyntheticUserModel(UserModel):
    """Users with latent topic interests who drift, get bored and leave.

    Per user: interests ``u`` (T topics, normal), boredom ``b`` (T, starts at 0). Item ``i`` has a
    topic mixture ``v_i`` (primary 0.7, secondary 0.3) and a quality ``q_i``. Consuming ``i``:

    - expected reward ``e = sigmoid(affinity_scale * (u·v_i + quality_weight*q_i - boredom_weight*b·v_i))``
    - reward ``r = clip(e + reward_noise * N(0,1), 0, 1)``
    - boredom ``b <- boredom_decay * b + v_i`` (repeating a topic wears it out)
    - drift ``u <- u + drift_rate * (r - 0.5) * v_i`` (liked topics grow, disliked ones fade)
    - leave probability ``leave_base + leave_slope * (1 - r)``

    Observable user features are a noisy fixed projection of the initial interests.
    """

    def __init__(self, config: SyntheticConfig | None = None) -> None:
        self.config = cfg = config or SyntheticConfig()
        self.catalog, topics, self.quality, self._projection = _generate_catalog(cfg)
        # Per-user state and item topics in float32: half the memory traffic on the per-step hot path.
        self.topics = topics.astype(np.float32)
        self.item_embeddings = self.topics
        self._topics_t = np.ascontiguousarray(self.topics.T)
        self.reward_range = (0.0, 1.0)
        self.user_feature_dim = cfg.user_feature_dim

    def init_state(self, keys: np.ndarray) -> UserState:
        cfg = self.config
        interest = (cfg.interest_std * crng.normal(crng.derive(keys, 0), cfg.n_topics)).astype(np.float32)
        noise = cfg.feature_noise * crng.normal(crng.derive(keys, 1), cfg.user_feature_dim)
        features = np.tanh(interest @ self._projection.T + noise).astype(np.float32)
        return {"interest": interest, "boredom": np.zeros_like(interest), "features": features}

    def _affinity(self, state: UserState, items: np.ndarray, v: np.ndarray) -> np.ndarray:
        cfg = self.config
        taste = np.einsum("ij,ij->i", state["interest"], v)
        taste -= cfg.boredom_weight * np.einsum("ij,ij->i", state["boredom"], v)
        return taste + cfg.quality_weight * self.quality[items]

    def respond(self, state: UserState, items: np.ndarray, keys: np.ndarray) -> Response:
        cfg = self.config
        v = self.topics[items]
        expected = 1.0 / (1.0 + np.exp(-cfg.affinity_scale * self._affinity(state, items, v)))
        reward = expected + cfg.reward_noise * crng.normal(keys, 1)[:, 0]
        np.clip(reward, 0.0, 1.0, out=reward)
        boredom = state["boredom"]
        boredom *= cfg.boredom_decay
        boredom += v
        state["interest"] += (cfg.drift_rate * (reward - 0.5))[:, None] * v
        leave = cfg.leave_base + cfg.leave_slope * (1.0 - reward)
        return Response(reward=reward, expected=expected, leave_probability=leave)

    def expected_rewards(self, state: UserState) -> np.ndarray:
        cfg = self.config
        taste = (state["interest"] - cfg.boredom_weight * state["boredom"]) @ self._topics_t
        return 1.0 / (1.0 + np.exp(-cfg.affinity_scale * (taste + cfg.quality_weight * self.quality)))

    def user_features(self, state: UserState) -> np.ndarray:
        return state["features"]
