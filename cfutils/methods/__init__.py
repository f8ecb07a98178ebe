"""Continual-learning methods: one short file each, all built on the hooks of :class:`Method`."""
from .base import Method
from .ewc import EWC, OnlineEWC
from .joint import Joint
from .mas import MAS
from .naive import Naive
from .quadratic import QuadraticPenalty
from .si import SI
from .buffer import Buffer
from .replay import Replay
from .der import DER
from .generative_replay import VAE, GenerativeReplay
from .icarl import ICaRL, herding
from .teacher import FrozenTeacher
from .weight_align import align_weights
from .lwf import LwF, LwFReplay
from .lfl import LFL
from .episodic import EpisodicProjection, InterferenceLog
from .gem import GEM
from .agem import AGEM
from .ogd import OGD
from .gpm import GPM
from .pcgrad import PCGrad
from .mer import MER

__all__ = ["Method", "Naive", "Joint"]
__all__ += ["QuadraticPenalty", "EWC", "OnlineEWC", "SI", "MAS"]
__all__ += ["Buffer", "Replay", "DER", "VAE", "GenerativeReplay", "ICaRL", "herding"]
__all__ += ["FrozenTeacher", "LwF", "LwFReplay", "LFL", "align_weights"]
__all__ += ["EpisodicProjection", "InterferenceLog", "GEM", "AGEM", "OGD", "GPM", "PCGrad", "MER"]
