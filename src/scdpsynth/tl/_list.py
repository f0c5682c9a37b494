from __future__ import annotations

import pandas as pd


def list_methods() -> pd.DataFrame:
    """Registered generators: name, summary, input data kind and supported privacy units."""
    from ..generators import registry

    return registry.to_frame()


def list_metrics() -> pd.DataFrame:
    """Registered evaluation metrics."""
    from ..metrics import registry

    return registry.to_frame()


def list_attacks() -> pd.DataFrame:
    """Registered membership-inference attacks."""
    from ..attacks import registry

    return registry.to_frame()
