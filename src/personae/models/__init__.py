"""Buy-till-you-die purchase models and the Gamma-Gamma spend model, scikit-learn style:
parameters in __init__, fit(...) returns self, learned values end in `_` (params_,
log_likelihood_, standard_errors_, covariance_)."""

from personae.models._base import ModelError, compress
from personae.models._purchase import BGBB, BGNBD, ModifiedBGNBD, ParetoNBD
from personae.models._spend import GammaGamma

__all__ = ["BGNBD", "ModifiedBGNBD", "ParetoNBD", "BGBB", "GammaGamma", "ModelError", "compress"]
