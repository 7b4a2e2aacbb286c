"""The registered environments: one class per id (the entry points of ``ENVIRONMENTS``), each documenting its user
model and leave rule."""

from __future__ import annotations

from typing import Any, ClassVar

from ialp.envs.rec_env import RecEnv
from ialp.envs.registration import build_parts


class _RegisteredEnv(RecEnv):
    env_id: ClassVar[str]

    def __init__(self, **kwargs: Any) -> None:
        model, env_kw = build_parts(self.env_id, kwargs)
        super().__init__(model, **env_kw)


class SyntheticEnv(_RegisteredEnv):
    """Synthetic users with known ground truth (``ialp/Synthetic-v0``, the embedded default).

    ## Description
    Items carry a primary and a secondary topic (20 readable topics such as "jazz" or "chess"), a
    hidden quality and generated titles and descriptions. Each episode draws a user with latent
    topic interests ``u``; consuming item ``i`` gives the expected reward
    ``sigmoid(affinity_scale * (u·v_i + quality_weight*q_i - boredom_weight*b·v_i))`` plus Gaussian
    noise, after which boredom ``b`` accumulates on the item's topics and interests drift toward
    (or away from) them in proportion to the reward. See ``ialp.simulators.SyntheticUserModel``.

    ## Action Space
    ``Discrete(n_items)`` (default 1000), or ``Discrete(K)`` with ``candidates=K``.

    ## Observation Space
    ``Dict``: ``history`` (10, 20) topic mixtures of the last items, ``feedback`` (10,), ``mask``
    (10,), ``user`` (8,) a noisy fixed projection of the user's initial interests.

    ## Rewards
    Engagement in [0, 1].

    ## Starting State
    A fresh user (interests ~ N(0, 1) per topic), no boredom, empty history.

    ## Episode End
    Leave rule: after each item the user quits with probability
    ``leave_base + leave_slope * (1 - reward)`` (default 0.02 + 0.15 * (1 - reward)), so boring or
    repetitive recommendations end sessions early (``terminated``). ``truncated`` after 50 steps.

    ## Arguments
    Every ``SyntheticConfig`` field (``n_items``, ``n_topics``, ``catalog_seed``, ``boredom_weight``,
    ``drift_rate``, ``reward_noise``, ``leave_base``, ``leave_slope``, ...), plus ``history_len``,
    ``repeat``, ``repeat_penalty``, ``leave_rules``, ``candidates``, ``render_mode``.

    ## Version History
    * v0: initial version.
    """

    env_id = "ialp/Synthetic-v0"


class MovieLensEnv(_RegisteredEnv):
    """MovieLens users simulated by a model fitted on their ratings (``ialp/MovieLens-v0``).

    ## Description
    Loads a MovieLens folder (ml-latest-small, ml-100k or ml-1m, detected from its files) and fits
    biased matrix factorisation by alternating least squares on the first 90% of each user's
    ratings; the held-out RMSE is printed next to predicting the mean, and the fit is cached on disk.
    Each episode samples one of the log's users; the reward for a movie is the predicted rating.

    ## Action Space
    ``Discrete(n_movies)``, or ``Discrete(K)`` with ``candidates=K``.

    ## Observation Space
    ``Dict``: ``history`` (10, 16) fitted item factors (scaled to [-1, 1]) of the last movies,
    ``feedback`` (10,) their predicted ratings, ``mask`` (10,), ``user`` (2,) activity and mean
    rating in the log.

    ## Rewards
    Predicted rating, clipped to the data set's rating range (0.5–5 or 1–5).

    ## Starting State
    A user drawn uniformly from the log's users, with an empty history.

    ## Episode End
    Leave rules (``terminated``): the user quits when the new movie shares a genre with more than 3
    of the last 5 movies (KuaiEnv/DORL style), or after 3 predicted ratings below 3.0 in a row.
    ``truncated`` after 50 steps.

    ## Arguments
    ``data_dir`` (or ``IALP_DATA_DIR``), ``mf`` (``MFConfig`` fields: ``dim``, ``reg``,
    ``iterations``, ``holdout_fraction``, ``seed``), ``reward_noise``, and the common ``history_len``,
    ``repeat``, ``repeat_penalty``, ``leave_rules``, ``candidates``, ``render_mode``.

    ## Version History
    * v0: initial version.
    """

    env_id = "ialp/MovieLens-v0"


class KuaiRecEnv(_RegisteredEnv):
    """KuaiRec users simulated by a model fitted on their watch ratios (``ialp/KuaiRec-v0``).

    ## Description
    Loads KuaiRec 2.0 (``data/small_matrix.csv`` by default, ``matrix="big"`` for the big matrix,
    ``item_categories.csv`` for categories) and fits matrix factorisation on the watch ratio, as
    the ground-truth user model of KuaiEnv in DORL/EasyRL4Rec. The data are not shipped: get them
    from https://kuairec.com/ and pass ``data_dir`` or set ``IALP_KUAIREC_DIR``.

    ## Action Space
    ``Discrete(n_videos)``, or ``Discrete(K)`` with ``candidates=K``.

    ## Observation Space
    As ``ialp/MovieLens-v0``: ``history``, ``feedback`` (watch ratios), ``mask``, ``user`` (2,).

    ## Rewards
    Predicted watch ratio, clipped to the observed range.

    ## Starting State
    A user drawn uniformly from the log's users, with an empty history.

    ## Episode End
    Leave rules (``terminated``): more than 3 of the last 5 videos share a category with the new one,
    or 3 predicted watch ratios below 0.5 in a row. ``truncated`` after 50 steps.

    ## Arguments
    ``data_dir``, ``matrix`` (``"small"`` or ``"big"``), ``mf``, ``reward_noise`` and the common ones.

    ## Version History
    * v0: initial version.
    """

    env_id = "ialp/KuaiRec-v0"


class KuaiRandEnv(_RegisteredEnv):
    """KuaiRand users simulated by a model fitted on their clicks (``ialp/KuaiRand-v0``).

    ## Description
    Loads KuaiRand (Pure, 1K or 27K: the ``log_standard_*`` files and ``video_features_basic_*``)
    and fits matrix factorisation on ``is_click`` (``feedback=`` picks another signal); the held-out
    AUC is reported. The data are not shipped: get them from https://kuairand.com/ and pass
    ``data_dir`` or set ``IALP_KUAIRAND_DIR``.

    ## Action Space
    ``Discrete(n_videos)``, or ``Discrete(K)`` with ``candidates=K``.

    ## Observation Space
    As ``ialp/MovieLens-v0``: ``history``, ``feedback`` (predicted click probability), ``mask``,
    ``user`` (2,).

    ## Rewards
    Predicted click probability in [0, 1].

    ## Starting State
    A user drawn uniformly from the log's users, with an empty history.

    ## Episode End
    Leave rules (``terminated``): more than 3 of the last 5 videos share a tag with the new one, or 3
    predicted click probabilities below 0.2 in a row. ``truncated`` after 50 steps.

    ## Arguments
    ``data_dir``, ``feedback``, ``mf``, ``reward_noise`` and the common ones.

    ## Version History
    * v0: initial version.
    """

    env_id = "ialp/KuaiRand-v0"
