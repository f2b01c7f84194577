"""Training: the Learner, its callbacks, lr schedules, the lr finder, metrics and checkpoints."""

from heron.train.callbacks import Callback, EarlyStopping, MetricsLogger, ProgressBar
from heron.train.checkpoint import Checkpoint, checkpoint_info, load_checkpoint
from heron.train.learner import Learner
from heron.train.lr_find import LRFinderResult
from heron.train.schedules import Schedule

__all__ = [
    "Callback",
    "Checkpoint",
    "EarlyStopping",
    "LRFinderResult",
    "Learner",
    "MetricsLogger",
    "ProgressBar",
    "Schedule",
    "checkpoint_info",
    "load_checkpoint",
]
