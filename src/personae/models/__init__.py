"""Buy-till-you-die purchase models and the Gamma-Gamma spend model, scikit-learn style:
parameters in __init__, fit(...) returns self, learned values end in `_` (params_,
log_likelihood_, standard_errors_, covariance_). CLV arithmetic is in `personae.models.clv`."""

from personae.models._base import ModelError, compress
from personae.models._purchase import BGBB, BGNBD, NBD, ModifiedBGNBD, ParetoNBD, PurchaseModel
from personae.models._spend import GammaGamma
from personae.models.clv import MeanSpend, clv_factor, clv_factor_interval

# The continuous-time purchase models predict can use, by the name [predict] model takes.
PURCHASE_MODELS: dict[str, type[PurchaseModel]] = {
    "bgnbd": BGNBD,
    "mbgnbd": ModifiedBGNBD,
    "pnbd": ParetoNBD,
}

__all__ = [
    "BGNBD",
    "ModifiedBGNBD",
    "NBD",
    "ParetoNBD",
    "BGBB",
    "GammaGamma",
    "MeanSpend",
    "ModelError",
    "PURCHASE_MODELS",
    "PurchaseModel",
    "clv_factor",
    "clv_factor_interval",
    "compress",
]
