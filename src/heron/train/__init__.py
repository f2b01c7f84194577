"""Training: the Learner, its callbacks, lr schedules, the lr finder, metrics, checkpoints and several processes.

`heron.train.distributed` holds the process-group helpers (init_from_env, rank,
barrier, gather_cat, shard ...); its sampler and batch norm are exported here.
"""

from heron.train.callbacks import Callback, EarlyStopping, MetricsLogger, ProgressBar, TimeBudget
from heron.train.checkpoint import Checkpoint, checkpoint_info, load_checkpoint
from heron.train.distributed import GlobalBatchSampler, SyncBatchNorm, convert_sync_batchnorm
from heron.train.learner import Learner
from heron.train.lr_find import LRFinderResult
from heron.train.schedules import Schedule

__all__ = [
    "Callback",
    "Checkpoint",
    "EarlyStopping",
    "GlobalBatchSampler",
    "LRFinderResult",
    "Learner",
    "MetricsLogger",
    "ProgressBar",
    "Schedule",
    "TimeBudget",
    "SyncBatchNorm",
    "checkpoint_info",
    "convert_sync_batchnorm",
    "load_checkpoint",
]
