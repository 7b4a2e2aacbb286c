"""ialp: reinforcement-learning recommenders with LLM-driven policy exploration.

Importing the package registers its Gymnasium ids (``ialp/Synthetic-v0``, ``ialp/MovieLens-v0``,
``ialp/KuaiRec-v0``, ``ialp/KuaiRand-v0``), and asks the ``forkserver`` of ``multiprocessing`` (the default start
method of SB3's ``SubprocVecEnv`` on Linux) to import ``ialp`` too, so that its workers know the ids. Under the
``spawn`` start method, name the module in the id: ``"ialp:ialp/Synthetic-v0"`` (Gymnasium imports it first).
"""

import multiprocessing

from ialp.envs.registration import register_envs

__version__ = "0.1.0"

register_envs()
multiprocessing.set_forkserver_preload(["__main__", "ialp"])

__all__ = ["__version__"]
