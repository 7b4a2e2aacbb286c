"""User simulators: the ``UserModel`` seam, synthetic and log-fitted users, and leave rules."""

from ialp.simulators.base import Response, UserModel, UserState
from ialp.simulators.leave import (
    DistanceLeave,
    LeaveRule,
    LowRewardLeave,
    TagOverlapLeave,
    make_leave_rule,
)
from ialp.simulators.logged import FitReport, LoggedUserModel, MatrixFactorization, MFConfig
from ialp.simulators.synthetic import SyntheticConfig, SyntheticUserModel

__all__ = [
    "DistanceLeave",
    "FitReport",
    "LeaveRule",
    "LoggedUserModel",
    "LowRewardLeave",
    "MFConfig",
    "MatrixFactorization",
    "Response",
    "SyntheticConfig",
    "SyntheticUserModel",
    "TagOverlapLeave",
    "UserModel",
    "UserState",
    "make_leave_rule",
]
