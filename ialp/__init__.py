"""ialp: reinforcement-learning recommenders with LLM-driven policy exploration.

Importing the package registers its Gymnasium ids (``ialp/Synthetic-v0``, ``ialp/MovieLens-v0``,
``ialp/KuaiRec-v0``, ``ialp/KuaiRand-v0``).
"""

from ialp.envs.registration import register_envs

__version__ = "0.1.0"

register_envs()

__all__ = ["__version__"]
