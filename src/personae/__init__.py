"""personae: customer data in; traits, segments and data-grounded personas out."""

from personae.api import Project
from personae.errors import ConfigError, PersonaeError, SourceError, StoreError

__version__ = "0.1.0"
__all__ = ["Project", "PersonaeError", "ConfigError", "SourceError", "StoreError", "__version__"]
